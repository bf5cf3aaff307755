// Containment of a job's processes on one rank (docs/security.md;
// docs/protocols/exec.md, "Containment"): a cgroup of its own per job
// where a writable cgroup version 2 hierarchy exists.
//
// The shell launch service finds the hierarchy from the mount table (type
// cgroup2: /sys/fs/cgroup on a pure version 2 system, beside the version 1
// controllers on a hybrid one), takes its own cgroup (/proc/self/cgroup,
// line "0::PATH") as the parent, and makes there `loom-PID` (PID: the
// broker's), and in it `job-ID` for each job's shell. The shell joins its
// job's cgroup first thing, while it is still root, before it becomes the
// job's user or starts a task: every process it starts, `setsid` or not,
// stays in it. `cgroup.kill` ends them all at once; other signals go to
// every process listed in `cgroup.procs`.
//
// The parsers take the files' text, so that they are tested without the
// machine's own.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace loom {

// The mount point of the cgroup2 file system in `mounts` (/proc/self/mounts
// text), or nullopt. Octal escapes (\040 for a space) are decoded.
std::optional<std::string> find_cgroup2_mount(std::string_view mounts);

// This process's cgroup in the version 2 hierarchy, from /proc/self/cgroup
// text (the "0::PATH" line), or nullopt.
std::optional<std::string> own_cgroup2(std::string_view proc_cgroup);

// Where this broker makes its jobs' cgroups: "<mount><own cgroup>/NAME",
// created (and checked to have cgroup.kill). An error says why there is
// none: no cgroup2 mount, not writable, a kernel without cgroup.kill.
Result<std::string> make_cgroup_root(const std::string& name);

// Makes `dir`/job-ID; its path. EEXIST is fine (a job started again).
Result<std::string> make_job_cgroup(const std::string& root, uint64_t job);

// Moves this process into cgroup `path`.
Status join_cgroup(const std::string& path);

// The processes in cgroup `path` (its cgroup.procs).
std::vector<pid_t> cgroup_pids(const std::string& path);

// SIGKILL to every process in cgroup `path`, its descendants included, in
// one step (cgroup.kill): none can fork away meanwhile.
Status kill_cgroup(const std::string& path);

// `sig` to every process in cgroup `path` but `except`.
void signal_cgroup(const std::string& path, int sig, pid_t except = -1);

// Without a cgroup, a job is its shell's process group. The process group
// of a process from its /proc/PID/stat text, or nullopt for a zombie (it
// holds nothing any more) or text that does not parse.
std::optional<pid_t> live_process_group(std::string_view stat);

// The live processes of process group `pgid` (from /proc).
std::vector<pid_t> process_group_members(pid_t pgid);

// Removes cgroup `path` (it must be empty): true once it is gone, false
// while processes remain in it (EBUSY); other errors are logged by the
// caller through `why`.
bool remove_cgroup(const std::string& path, std::string* why = nullptr);

// The cgroup (a full path under the cgroup2 mount) that process `pid` is
// in, or nullopt.
std::optional<std::string> cgroup_of(pid_t pid);

}  // namespace loom
