#include "compare/run_record.h"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>

#include "compare/post_eval.h"
#include "core/error.h"
#include "io/input_file.h"
#include "io/json_input.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {

namespace {

Json read_json_file(const std::string& path) {
  return parse_ordered_json(read_input_file(path, "file"), path);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void read_metrics(const std::string& path, RunRecord& r) {
  std::ifstream in(path);
  ECMOE_CHECK(in.good(), "cannot read ", path);
  std::map<int64_t, double> seconds_through;  // step -> training seconds up to it
  std::vector<double> step_seconds;
  double elapsed = 0, dropped = 0, without = 0, demand = 0;
  double train_loss_sum = 0;  // since the last validation
  int64_t train_loss_count = 0;
  std::vector<double> train_loss_before;  // per validation, in order
  int64_t layer_steps = 0, steps_with_layers = 0;
  std::vector<Json> evals;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const Json j = parse_ordered_json(line, path + ":" + std::to_string(line_number));
    ECMOE_CHECK(j.contains("type"), path, ":", line_number, ": not a metrics line");
    const std::string type = j["type"];
    if (type == "start") {
      // A resumed run logs a start line per command; the data must be the same (checked on
      // resume), so the last one is as good as the first.
      r.data_train_tokens = j.value("train_tokens", int64_t(0));
    } else if (type == "train") {
      train_loss_sum += j.value("lm_loss", j.at("loss").get<double>());
      ++train_loss_count;
      const double dt = j.at("step_seconds").get<double>();
      elapsed += dt;
      step_seconds.push_back(dt);
      seconds_through[j.at("step").get<int64_t>()] = elapsed;
      double max_demand = 0;
      for (const Json& layer : j.at("moe_layers")) {
        dropped += layer.at("dropped_fraction").get<double>();
        without += double(layer.at("tokens_without_expert").get<int64_t>()) /
                   std::max<int64_t>(1, layer.at("tokens").get<int64_t>());
        max_demand = std::max(max_demand, layer.at("max_demand_over_capacity").get<double>());
        ++layer_steps;
      }
      if (!j.at("moe_layers").empty()) {
        demand += max_demand;
        ++steps_with_layers;
      }
    } else if (type == "eval") {
      evals.push_back(j);
      train_loss_before.push_back(train_loss_count ? train_loss_sum / double(train_loss_count) : 0);
      train_loss_sum = 0;
      train_loss_count = 0;
    }
  }
  ECMOE_CHECK(!evals.empty(), path, " has no validation lines");
  r.median_step_seconds = median(step_seconds);
  if (layer_steps > 0) {
    r.train_dropped_fraction = dropped / double(layer_steps);
    r.train_tokens_without_expert = without / double(layer_steps);
  }
  if (steps_with_layers > 0) r.train_max_demand_over_capacity = demand / double(steps_with_layers);
  double eval_dropped = 0;
  for (std::size_t k = 0; k < evals.size(); ++k) {
    const Json& e = evals[k];
    EvalPoint p;
    p.step = e.at("step").get<int64_t>();
    p.loss = e.at("loss").get<double>();
    p.perplexity = e.at("perplexity").get<double>();
    const auto it = seconds_through.find(p.step);
    p.train_seconds = it == seconds_through.end() ? 0.0 : it->second;
    p.train_loss = train_loss_before[k];
    eval_dropped = 0;
    for (const Json& layer : e.at("moe_layers")) {
      const auto hist = layer.at("experts_per_token").get<std::array<int64_t, 6>>();
      for (std::size_t i = 0; i < hist.size(); ++i) p.experts_per_token[i] += hist[i];
      eval_dropped += layer.at("dropped_fraction").get<double>();
    }
    r.curve.push_back(p);
  }
  const Json& last = evals.back();
  r.experts_per_token = r.curve.back().experts_per_token;
  if (!last.at("moe_layers").empty())
    r.eval_dropped_fraction = eval_dropped / double(last.at("moe_layers").size());
}

}  // namespace

RunRecord load_run_record(const std::string& dir) {
  const std::string result_path = (fs::path(dir) / kResultFile).string();
  const Json j = read_json_file(result_path);
  RunRecord r;
  try {
    r.run.name = j.at("name");
    r.run.variant = j.at("variant");
    r.run.family = j.at("family");
    r.run.seed = j.at("seed");
    r.router = j.at("router");
    r.commit = j.value("commit", "");
    r.steps = j.at("steps");
    r.tokens_per_step = j.at("tokens_per_step");
    r.train_seconds = j.at("train_seconds");
    r.final_loss = j.at("final").at("loss");
    r.final_perplexity = j.at("final").at("perplexity");
    if (j.contains("post_evals"))
      for (const Json& e : j["post_evals"]) r.post_evals.push_back(post_eval_from_json(e));
    if (!r.post_evals.empty()) r.leakage = r.post_evals.front().leakage;
  } catch (const Json::exception& e) {
    fail(result_path, ": ", e.what());
  }
  read_metrics((fs::path(dir) / "metrics.jsonl").string(), r);
  return r;
}

}  // namespace ecmoe::compare
