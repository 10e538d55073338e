#include "train/report.h"

#include <cstdint>
#include <cstdio>

namespace ecmoe {

namespace {
std::string percent(int64_t part, int64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", whole ? 100.0 * double(part) / double(whole) : 0.0);
  return buf;
}
}  // namespace

std::string format_eval_report(const ModelConfig& model, const EvalResult& r) {
  char line[256];
  std::snprintf(line, sizeof(line), "loss %.4f  perplexity %.2f  (%lld targets, %d batches)\n",
                r.loss, r.perplexity, (long long)r.counted, r.batches);
  std::string out = line;
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    if (!model.is_moe_layer(int(l))) continue;
    const RoutingStats& s = r.layers[l];
    out += "layer " + std::to_string(l) + " (" + router_name(model.moe.router) + ")\n";
    static const char* kBins[] = {"0", "1", "2", "3", "4", ">4"};
    out += "  experts per token:";
    for (std::size_t b = 0; b < s.experts_per_token.size(); ++b)
      out += std::string("  ") + kBins[b] + ": " + percent(s.experts_per_token[b], s.tokens);
    std::snprintf(line, sizeof(line), "  (mean %.2f)\n", s.mean_experts_per_token());
    out += line;
    int64_t slots = 0;
    for (int64_t c : s.tokens_per_expert) slots += c;
    out += "  load per expert:  ";
    for (std::size_t e = 0; e < s.tokens_per_expert.size(); ++e)
      out.append(" ").append(percent(s.tokens_per_expert[e], slots));
    std::snprintf(line, sizeof(line),
                  "\n  dropped %.2f%% of choices, max demand/capacity %.2f, router entropy %.3f\n",
                  100.0 * s.dropped_fraction(), s.max_demand_over_capacity,
                  s.mean_router_entropy());
    out += line;
  }
  return out;
}

}  // namespace ecmoe
