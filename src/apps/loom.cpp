// loom: the command line.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <string_view>

#include "cli/common.h"

// jemalloc's control call, present when loom is linked with it (release
// builds); weak, so that loom links without it.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) __attribute__((weak));

namespace {
// `loom sim` walks a heap of hundreds of megabytes by pointer (trees of
// jobs, keys and idsets), where small pages cost a TLB miss at many steps:
// with jemalloc's heap on transparent huge pages, CEA-Curie's replay runs
// about 3 % faster (docs/simulator.md, "Speed"). jemalloc reads that
// option only as it starts, so a simulation runs loom again with it set,
// unless MALLOC_CONF says otherwise already. Other commands keep small
// pages: their heaps are small, and huge pages would add megabytes to each.
void rerun_sim_on_huge_pages(int argc, char** argv) {
  if (mallctl == nullptr || argc < 2 || std::string_view(argv[1]) != "sim" || std::getenv("MALLOC_CONF")) return;
  if (::setenv("MALLOC_CONF", "thp:always,metadata_thp:always", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  ::unsetenv("MALLOC_CONF");  // not run again: on as it is
}
}  // namespace

int main(int argc, char** argv) {
  rerun_sim_on_huge_pages(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  // A closed stdin, stdout or stderr is /dev/null: otherwise the first
  // descriptor we open (a socket, an event queue) would take its place,
  // and `loom run` would send it to the job as its input.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd) return 1;
  }
  CLI::App app{"loom: a cluster resource manager's job pipeline"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "loom 0.1.0");
  loom::cli::Runner run;
  loom::cli::add_start_command(app, run);
  loom::cli::add_ping_command(app, run);
  loom::cli::add_rpc_command(app, run);
  loom::cli::add_status_command(app, run);
  loom::cli::add_top_command(app, run);
  loom::cli::add_kvs_command(app, run);
  loom::cli::add_submit_command(app, run);
  loom::cli::add_run_command(app, run);
  loom::cli::add_batch_command(app, run);
  loom::cli::add_alloc_command(app, run);
  loom::cli::add_jobs_command(app, run);
  loom::cli::add_cancel_command(app, run);
  loom::cli::add_job_command(app, run);
  loom::cli::add_resource_command(app, run);
  loom::cli::add_queue_command(app, run);
  loom::cli::add_keygen_command(app, run);
  loom::cli::add_sim_command(app, run);
  return loom::cli::parse_and_run(app, argc, argv, run);
}
