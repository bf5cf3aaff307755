#include "shell/batch_script.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/write_all.h"

namespace loom {

Result<std::string> write_batch_script(const std::string& id_text, const std::string& text,
                                       const std::vector<std::string>& env, std::string& dir) {
  std::vector<std::string> dirs;
  for (const auto& e : env) {
    if (e.starts_with("TMPDIR=") && e.size() > 7) dirs.push_back(e.substr(7));
  }
  dirs.push_back("/tmp");
  std::string pattern;
  for (const auto& tmp : dirs) {
    pattern = tmp + "/loom-" + id_text + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) break;
    if (tmp == dirs.back()) {
      return Error{errno, "cannot make a directory for the batch script in " + tmp + ": " + std::strerror(errno)};
    }
  }
  dir = pattern;
  std::string path = dir + "/script";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  if (fd < 0) return Error{errno, "cannot write the batch script " + path + ": " + std::strerror(errno)};
  if (!write_all(fd, text)) {
    int e = errno;
    ::close(fd);
    return Error{e, "cannot write the batch script " + path + ": " + std::strerror(e)};
  }
  ::close(fd);
  return path;
}

}  // namespace loom
