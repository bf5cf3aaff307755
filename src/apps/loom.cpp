// loom: the command line.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>

#include "cli/common.h"

// jemalloc's options, which it reads as it starts when loom is linked with
// it (release builds; otherwise nothing reads this): its heap on
// transparent huge pages. `loom sim` walks a heap of hundreds of megabytes
// by pointer (trees of jobs, keys and idsets), where small pages cost a
// TLB miss at many steps: CEA-Curie's replay runs 1-4 % faster
// (docs/simulator.md, "Speed"). The option holds for every command, since
// jemalloc takes it before main() can tell them apart; a command's heap
// then starts at about 15 MB resident rather than 9. (Not loomd: a
// long-lived broker keeps to small pages.) MALLOC_CONF overrides it.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always,metadata_thp:always";
}

int main(int argc, char** argv) {
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
