// Job cgroups (cgroup.h).
#include "shell/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace loom {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The mount table escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.size() - i >= 4 &&
        s.substr(i + 1, 3).find_first_not_of("01234567") == std::string_view::npos) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Status write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Error{errno, path + ": " + std::strerror(errno)};
  ssize_t n = ::write(fd, text.data(), text.size());
  int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return Error{e, path + ": " + std::strerror(e)};
  return {};
}

}  // namespace

std::optional<std::string> find_cgroup2_mount(std::string_view mounts) {
  std::istringstream in{std::string(mounts)};
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string dev, dir, type;
    if (!(fields >> dev >> dir >> type)) continue;
    if (type == "cgroup2") return unescape(dir);
  }
  return std::nullopt;
}

std::optional<std::string> own_cgroup2(std::string_view proc_cgroup) {
  std::istringstream in{std::string(proc_cgroup)};
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("0::")) return line.substr(3);
  }
  return std::nullopt;
}

Result<std::string> make_cgroup_root(const std::string& name) {
  auto mount = find_cgroup2_mount(read_file("/proc/self/mounts"));
  if (!mount) return Error{ENOENT, "no cgroup2 file system is mounted"};
  auto own = own_cgroup2(read_file("/proc/self/cgroup"));
  if (!own) return Error{ENOENT, "this process is in no version 2 cgroup"};
  // A cgroup of ours that is being removed shows " (deleted)".
  if (own->ends_with(" (deleted)")) return Error{ENOENT, "this process's cgroup was removed"};
  std::string parent = *mount + (*own == "/" ? "" : *own);
  std::string dir = parent + "/" + name;
  // Those of brokers that died (killed: they could not remove theirs):
  // their jobs' cgroups that hold no process any more, then their own once
  // it is empty. A job cgroup with a process in it (a shell waiting for its
  // broker to come back) is not empty, so rmdir leaves it; a live broker's
  // stays whole.
  if (DIR* d = ::opendir(parent.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string entry = e->d_name;
      if (!entry.starts_with("loom-") || entry == name) continue;
      std::string pid = entry.substr(5);
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::access(("/proc/" + pid).c_str(), F_OK) == 0) continue;
      std::string dead = parent + "/" + entry;
      if (DIR* jobs = ::opendir(dead.c_str())) {
        while (dirent* j = ::readdir(jobs)) {
          if (std::string_view(j->d_name).starts_with("job-")) ::rmdir((dead + "/" + j->d_name).c_str());
        }
        ::closedir(jobs);
      }
      ::rmdir(dead.c_str());
    }
    ::closedir(d);
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error{errno, "cannot make " + dir + ": " + std::strerror(errno)};
  }
  if (::access((dir + "/cgroup.kill").c_str(), W_OK) != 0) {
    ::rmdir(dir.c_str());
    return Error{ENOTSUP, dir + " has no writable cgroup.kill (a kernel before 5.14?)"};
  }
  return dir;
}

Result<std::string> make_job_cgroup(const std::string& root, uint64_t job) {
  std::string dir = root + "/job-" + std::to_string(job);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error{errno, "cannot make " + dir + ": " + std::strerror(errno)};
  }
  return dir;
}

Status join_cgroup(const std::string& path) {
  return write_file(path + "/cgroup.procs", std::to_string(::getpid()) + "\n");
}

std::vector<pid_t> cgroup_pids(const std::string& path) {
  std::vector<pid_t> out;
  std::ifstream in(path + "/cgroup.procs");
  for (long pid; in >> pid;) out.push_back(static_cast<pid_t>(pid));
  return out;
}

Status kill_cgroup(const std::string& path) { return write_file(path + "/cgroup.kill", "1\n"); }

void signal_cgroup(const std::string& path, int sig, pid_t except) {
  for (pid_t pid : cgroup_pids(path)) {
    if (pid != except && pid > 0) ::kill(pid, sig);
  }
}

std::optional<pid_t> live_process_group(std::string_view stat) {
  // "PID (COMM) STATE PPID PGRP ...": COMM may hold anything, ')' too.
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::istringstream rest{std::string(stat.substr(close + 1))};
  char state = 0;
  long ppid = 0, pgrp = 0;
  if (!(rest >> state >> ppid >> pgrp) || state == 'Z' || state == 'X' || pgrp <= 0) return std::nullopt;
  return static_cast<pid_t>(pgrp);
}

std::vector<pid_t> process_group_members(pid_t pgid) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (!proc) return out;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (live_process_group(read_file("/proc/" + std::string(e->d_name) + "/stat")) == pgid) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return out;
}

bool remove_cgroup(const std::string& path, std::string* why) {
  if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
  if (why && errno != EBUSY) *why = path + ": " + std::strerror(errno);
  return false;
}

std::optional<std::string> cgroup_of(pid_t pid) {
  auto mount = find_cgroup2_mount(read_file("/proc/self/mounts"));
  auto own = own_cgroup2(read_file("/proc/" + std::to_string(pid) + "/cgroup"));
  if (!mount || !own) return std::nullopt;
  return *mount + (*own == "/" ? "" : *own);
}

}  // namespace loom
