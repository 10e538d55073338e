// The metrics log: one JSON object per line in <out>/metrics.jsonl (format in docs/training.md).
// Lines are flushed as they are written, so a killed run keeps every step it logged.
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "moe/routing_stats.h"
#include "train/evaluate.h"

namespace ecmoe {

using MetricsJson = nlohmann::ordered_json;

// Routing statistics of one layer: load per expert, experts-per-token histogram (0..4, >4), and
// the ratios derived from them.
MetricsJson routing_stats_json(const RoutingStats& stats);
// {"layer": l, ...routing_stats_json} for each MoE layer of the model (dense layers have nothing
// to report).
MetricsJson moe_layers_json(const ModelConfig& model, const std::vector<RoutingStats>& layers);
MetricsJson eval_json(const ModelConfig& model, const EvalResult& result);

class MetricsLog {
 public:
  // Opens <path> for appending. With keep_through_step >= 0 (a resumed run), lines of steps after
  // it are dropped first: they belong to the part of the killed run that the checkpoint lost and
  // are about to be logged again. keep_through_step < 0 starts a new, empty file.
  MetricsLog(const std::string& path, int64_t keep_through_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const MetricsJson& line);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace ecmoe
