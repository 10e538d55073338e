#include "moe/cutoffs.h"

#include <cstddef>
#include <vector>

#include "core/error.h"

namespace ecmoe {

void update_cutoffs(std::span<float> cutoff, const RoutingStats& stats, float rate) {
  ECMOE_CHECK(rate > 0.f && rate <= 1.f, "update_cutoffs: rate must be in (0, 1], got ", rate);
  const std::vector<double> target = stats.mean_kth_scores();
  if (target.empty()) return;  // no routing group (empty batch)
  ECMOE_CHECK(target.size() == cutoff.size(), "update_cutoffs: ", target.size(),
              " k-th scores for ", cutoff.size(), " experts");
  for (size_t i = 0; i < cutoff.size(); ++i)
    cutoff[i] = (cutoff[i] < 0.f || rate == 1.f)
                    ? float(target[i])
                    : cutoff[i] + rate * (float(target[i]) - cutoff[i]);
}

}  // namespace ecmoe
