// The router's entropy, a routing statistic (RoutingStats::router_entropy_sum).
#pragma once

namespace ecmoe {

// Sum over tokens of the entropy of each token's router distribution (nats).
double router_entropy_sum(const float* probs, int n, int e);

}  // namespace ecmoe
