// Threshold routing's cutoffs (docs/causal.md): each expert's score cutoff, moved after a forward
// toward the mean k-th selected score that forward reported (RoutingStats::mean_kth_scores).
#pragma once
#include <span>

#include "moe/routing_stats.h"

namespace ecmoe {

// cutoff[i] += rate · (target[i] − cutoff[i]); a cutoff not yet calibrated (< 0), or rate 1,
// takes the target itself. Nothing changes when the forward had no routing group (no tokens).
// Throws unless the stats report one k-th score per cutoff and rate is in (0, 1].
void update_cutoffs(std::span<float> cutoff, const RoutingStats& stats, float rate);

}  // namespace ecmoe
