// What the tls/ unit tests share: temporary directories and an
// instance's keys made by keygen. Tests only.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "base/assert.h"
#include "tls/keygen.h"
#include "tls/tls.h"

namespace loom::tls::test_keys {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "loom-tls-test-XXXXXX").string();
    LOOM_ASSERT(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string file_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline mode_t mode_of(const fs::path& p) {
  struct stat st {};
  LOOM_ASSERT(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// An instance's keys for node0, node1 and node2, as `loom keygen` writes them.
struct Instance {
  TempDir dir;
  Instance() {
    auto w = keygen(KeygenRequest{dir.path(), {"node0", "node1", "node2"}});
    LOOM_ASSERT(w.ok());
  }
  Files files(const std::string& host) const { return Files::for_host(dir.path(), host); }
};

}  // namespace loom::tls::test_keys
