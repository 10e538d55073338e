// Usage errors of the command line: one line, exit status 1 (docs/training.md). CLI11's own
// messages are made compact here (its range checks print the largest double in full, 300 digits).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace ecmoe::cli {

// Throws ecmoe::Error "unknown command 'X'; commands: a, b, ... (did you mean 'Y'?)" when the
// first word after an app's options is not one of its subcommands, at every level that has
// subcommands. Runs before CLI11 parses, so `ecmoe trian --help` is an error rather than the
// top-level help.
void check_command_names(const CLI::App& app, int argc, const char* const* argv);

// A CLI11 parse error as one line: numbers compact ("1.79769e+308", not 309 digits), CLI11's
// range wording ("not in range 0.000000 to 1797...") as "must be >= 0" / "must be positive".
// `app` is searched for the option named in the message, to tell CLI::PositiveNumber from
// CLI::NonNegativeNumber (both print their minimum as 0.000000).
std::string usage_message(const CLI::App& app, const CLI::Error& error);

}  // namespace ecmoe::cli
