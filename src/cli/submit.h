// What loom submit, loom run, loom batch and loom alloc share: their job
// options, the jobspec built from them (submit.cpp), and the #LOOM
// directives of a script (batch.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "msg/json.h"

namespace loom::cli {

struct SubmitOpts {
  uint32_t nodes = 0;
  uint32_t tasks = 0;
  uint32_t cores = 1;
  uint32_t gpus = 0;
  bool exclusive = false;
  std::string time_limit;
  int urgency = 16;
  std::string cc;
  std::string name;
  std::string cwd;
  std::vector<std::string> setattr;
  std::vector<std::string> env;
  std::vector<std::string> env_remove;
  std::vector<std::string> env_file;
  bool dry_run = false;
  bool label = false;
  std::string output;
  std::string error;
  std::string input = "none";  // --input: FILE, "all", task ranks or "none"
  std::vector<std::string> command;
  std::vector<std::string> dependency;  // --dependency, as given
  // A batch job (loom batch, loom alloc): the script its one task runs
  // (command[0] names it; the rest are its arguments). Such a job is
  // always the instance's, never a step of an enclosing allocation.
  std::string script;
};

// The job options of submit, run, batch and alloc; with `command`, the
// positional COMMAND... too.
void add_job_options(CLI::App* sub, SubmitOpts& o, bool command = true);

// The jobspec `o` asks for. Inside an allocation (LOOM_ALLOCATION set, not
// for a batch job), the job is a step of it.
Result<Json> make_jobspec(const SubmitOpts& o);

// Submits (the --cc copies too) and prints the ids; the exit status.
// Errors say "loom CMD: ...".
int run_submit(const SubmitOpts& o, const std::string& cmd = "submit");

// The #LOOM directives of a script's `text` (docs/steps.md): each line
// `#LOOM OPTIONS` after the #! line, before the first line that is
// neither blank nor a comment, split as a shell splits words and parsed
// as the options of `sub`; an option `sub` was not given on the command
// line takes the directive's value (the command line wins; a later line
// wins over an earlier one; repeatable options add up). Text that is not
// a script (no #!) has none. The error names `name` and the line.
Status apply_directives(CLI::App* sub, const std::string& name, std::string_view text);
// The same for the file at `path`, if it is one (a path with a slash, as
// exec takes it, naming a regular file): what loom submit reads.
Status apply_directives(CLI::App* sub, const std::string& path);

}  // namespace loom::cli
