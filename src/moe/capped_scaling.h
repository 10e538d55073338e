// One row's or one column's step of capped expert choice's solver (moe/capped_solver.h): the
// exact KL projection onto {sum = target, entries <= 1}, i.e. the log-scale w with
//   f(w) = sum over j of min(1, exp(v[j] + w)) = target   (0 < target < n).
// One implementation for the CPU's solver (capped_solver.cpp: a thread over a row) and the GPU's
// (cuda/route_expert_choice_capped.cu: a block over a row, a warp over a column). A `Team` holds
// the n values v and does the reductions over them:
//   team.masked_lse(w, shifted) -> MaskedLse: the log-sum-exp (double) over the entries that w
//     does not clip (v[j] + w < 0; w = -inf clips none) of float(v[j] + w) when `shifted`, else
//     of v[j], and the count of clipped entries; -inf when every entry is clipped;
//   team.kth_largest(kth) -> the (kth + 1)-th largest of v.
#pragma once
#include <cfloat>
#include <cmath>

#include "core/host_device.h"

namespace ecmoe {

struct MaskedLse {
  double value;
  int clipped;
};

struct CappedMass {
  double mass;
  int clipped;
};

ECMOE_HOST_DEVICE inline bool infinite(double x) { return x > DBL_MAX || x < -DBL_MAX; }

// f(w), with the count of clipped entries.
#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <class Team>
ECMOE_HOST_DEVICE CappedMass capped_mass(Team& team, double w) {
  const MaskedLse rest = team.masked_lse(w, true);
  return {rest.clipped + (infinite(rest.value) ? 0.0 : exp(rest.value)), rest.clipped};
}

// f is increasing, smooth between the points where an entry reaches 1, and equal to
// m + exp(w) · T while the clipped set is fixed. Keep a bracket lo <= root <= hi; from lo, the
// closed form for lo's clipped set never passes the root (it ignores entries that would clip, so
// it undershoots) and is exact once no new entry clips; from hi, a Newton step on the convex
// piece; bisection if both stall.
#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <class Team>
ECMOE_HOST_DEVICE double capped_scaling(Team& team, int n, double target) {
  const double tol = 1e-6 * target;  // the mass is summed from fp32 exponentials
  double lo = log(target) - team.masked_lse(-INFINITY, false).value;  // f(lo) <= target
  const int kth = int(ceil(target)) - 1 < n - 1 ? int(ceil(target)) - 1 : n - 1;
  double hi = -double(team.kth_largest(kth));  // the kth largest entry reaches 1: f(hi) >= target
  if (hi <= lo) return lo;
  CappedMass at_lo = capped_mass(team, lo), at_hi = capped_mass(team, hi);
  for (int iter = 0; iter < 64; ++iter) {
    if (at_hi.mass - target <= tol) return hi;
    if (target - at_lo.mass <= tol) return lo;
    // Closed form on lo's clipped set (exact when hi clips the same entries).
    const double rest = team.masked_lse(lo, false).value;
    if (at_lo.clipped < target && !infinite(rest)) {
      const double w = log(target - at_lo.clipped) - rest;
      if (at_lo.clipped == at_hi.clipped) return w;
      if (w > lo && w < hi) {
        const CappedMass at_w = capped_mass(team, w);
        if (at_w.clipped == at_lo.clipped) return w;  // no new entry clipped: exact
        lo = w, at_lo = at_w;
      }
    }
    // Newton from hi (f convex on its piece, so the step stays at or above the root).
    const double slope = at_hi.mass - at_hi.clipped;
    double w = slope > 0 ? hi - (at_hi.mass - target) / slope : 0.5 * (lo + hi);
    if (!(w > lo && w < hi)) w = 0.5 * (lo + hi);
    const CappedMass at_w = capped_mass(team, w);
    if (at_w.mass < target) {
      lo = w, at_lo = at_w;
    } else {
      hi = w, at_hi = at_w;
    }
  }
  return hi;
}

}  // namespace ecmoe
