// Writing the whole of a buffer to a blocking descriptor.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace loom {

// Writes all of `data` to `fd`, again after EINTR and short writes. False
// on an error, with errno saying which (0 if the descriptor took nothing).
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = 0;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace loom
