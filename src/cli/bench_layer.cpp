#include "cli/commands.h"

namespace ecmoe::cli {
void register_bench_layer(CLI::App& bench) { bench.add_subcommand("layer", "MoE layer benchmark"); }
}  // namespace ecmoe::cli
