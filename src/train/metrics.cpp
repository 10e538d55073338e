#include "train/metrics.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/json_input.h"

namespace ecmoe {

MetricsJson routing_stats_json(const RoutingStats& s) {
  // Keys and their order come from the field list (moe/routing_stats.h).
  MetricsJson j;
  for_each_reported_stat(s, [&](const char* key, const auto& value) { j[key] = value; });
  return j;
}

MetricsJson moe_layers_json(const ModelConfig& model, const std::vector<RoutingStats>& layers) {
  MetricsJson out = MetricsJson::array();
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!model.is_moe_layer(int(l))) continue;
    MetricsJson j;
    j["layer"] = l;
    j.update(routing_stats_json(layers[l]));
    out.push_back(j);
  }
  return out;
}

MetricsJson eval_json(const ModelConfig& model, const EvalResult& r) {
  MetricsJson j;
  j["loss"] = r.loss;
  j["perplexity"] = r.perplexity;
  j["targets"] = r.counted;
  j["batches"] = r.batches;
  j["moe_layers"] = moe_layers_json(model, r.layers);
  return j;
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  if (keep_through_step >= 0) {
    std::ifstream in(path);
    std::ostringstream kept;
    std::string line;
    while (std::getline(in, line)) {
      // A torn last line (the run was killed mid-write) is not valid JSON: drop it too.
      MetricsJson j;
      try {
        j = parse_ordered_json(line, path);
      } catch (const Error&) {
        continue;
      }
      if (!j.contains("step") || j["step"].get<int64_t>() > keep_through_step) continue;
      kept << line << '\n';
    }
    write_file_atomically(path, kept.str());
  }
  file_ = std::fopen(path.c_str(), keep_through_step >= 0 ? "a" : "w");
  ECMOE_CHECK(file_ != nullptr, "cannot open ", path, ": ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const MetricsJson& line) {
  const std::string text = line.dump() + "\n";
  ECMOE_CHECK(
      std::fwrite(text.data(), 1, text.size(), file_) == text.size() && std::fflush(file_) == 0,
      "cannot write ", path_, ": ", std::strerror(errno));
}

}  // namespace ecmoe
