// The job shell of one rank (job_shell.cpp): runs this rank's tasks of
// the job, stores their output, feeds their input, and lives through a
// restart of its broker. Returns the exit code for the shell's process.
#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/clock.h"
#include "msg/client.h"
#include "msg/json.h"
#include "shell/user.h"

namespace loom {

// `info` is the job as the shell launch service gives it (see
// job_shell.cpp); `c` the connection to the broker that started us (null
// if it is gone: then we wait for it to come back); `user` the job's user,
// when we became it.
// Says why on stderr ("loom-shell: WHY") and exits 1.
[[noreturn]] void shell_die(const std::string& why);

int run_job_shell(asio::io_context& io, Clock& clock, std::string uri, uint32_t broker_uid, std::unique_ptr<Client> c,
                  Json info, std::optional<JobUser> user);

}  // namespace loom
