// The report's figures: gnuplot data files and one script, written next to the report and run
// with gnuplot into PNGs. The data and the script stay, so a figure can be restyled or redrawn
// without the runs.
#pragma once
#include <string>
#include <vector>

#include "compare/summary.h"

namespace ecmoe::compare {

struct PlotFiles {
  std::vector<std::string> png;  // file names, relative to the figure folder
};

// Writes <dir>/*.dat, <dir>/plots.gp and, running gnuplot in <dir>, the PNGs:
//   perplexity_vs_step.png, perplexity_vs_time.png (encoder variants),
//   decoder_perplexity_vs_step.png (decoder variants, if any),
//   experts_per_token.png (expert-choice variants' histograms).
// Throws if gnuplot is missing or fails.
PlotFiles write_plots(const std::string& dir, const std::vector<VariantSummary>& summaries);

// True when variant's router is one of the expert-choice family.
bool is_expert_choice(const VariantSummary& s);

}  // namespace ecmoe::compare
