#include "shell/affinity.h"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace loom {

Status bind_to_cores(const IdSet& cores) {
  if (cores.empty()) return {};
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    return Error{errno, std::string("cannot read this process's CPUs: ") + std::strerror(errno)};
  }
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (cpus.empty()) return {};
  cpu_set_t mine;
  CPU_ZERO(&mine);
  for (uint32_t core : cores.to_vector()) CPU_SET(cpus[core % cpus.size()], &mine);
  if (::sched_setaffinity(0, sizeof mine, &mine) != 0) {
    return Error{errno, std::string("cannot bind the tasks to their cores: ") + std::strerror(errno)};
  }
  return {};
}

}  // namespace loom
