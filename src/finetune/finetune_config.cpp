#include "finetune/finetune_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <type_traits>

#include "core/error.h"
#include "io/json_input.h"

namespace ecmoe::finetune {

namespace {

// The one list of fields, walked by the writer and the reader.
template <typename Visitor, typename Config>
void visit_fields(Visitor& v, Config& c) {
  v("checkpoint", c.checkpoint);
  v("task", c.task);
  v("train_file", c.train_file);
  v("dev_file", c.dev_file);
  v("test_file", c.test_file);
  v("text_column", c.text_column);
  v("text_pair_column", c.text_pair_column);
  v("label_column", c.label_column);
  v("dev_fraction", c.dev_fraction);
  v("tokenizer", c.tokenizer);
  v("cache_dir", c.cache_dir);
  v("pooling", c.pooling);
  v("max_len", c.max_len);
  v("steps", c.steps);
  v("token_budget", c.token_budget);
  v("max_train_examples", c.max_train_examples);
  v("batch_size", c.batch_size);
  v("eval_batch_size", c.eval_batch_size);
  v("peak_lr", c.peak_lr);
  v("warmup_fraction", c.warmup_fraction);
  v("weight_decay", c.weight_decay);
  v("clip_norm", c.clip_norm);
  v("head_init_std", c.head_init_std);
  v("eval_interval", c.eval_interval);
  v("patience", c.patience);
  v("seed", c.seed);
  v("out", c.out);
}

struct Writer {
  ConfigJson json = ConfigJson::object();
  void operator()(const char* key, Pooling p) { json[key] = pooling_name(p); }
  void operator()(const char* key, float x) {
    // The shortest decimal that reads back as the same float (3e-4f is 0.0003, not
    // 0.00030000001424923539), so config files stay readable and exact.
    char buf[32];
    for (int digits = 1; digits <= 9; ++digits) {
      std::snprintf(buf, sizeof(buf), "%.*g", digits, x);
      if (std::strtof(buf, nullptr) == x) break;
    }
    json[key] = std::strtod(buf, nullptr);
  }
  template <typename T>
  void operator()(const char* key, const T& value) {
    json[key] = value;
  }
};

struct Reader {
  const ConfigJson& json;
  std::set<std::string> seen;
  void operator()(const char* key, Pooling& p) {
    seen.insert(key);
    if (!json.contains(key)) return;
    ECMOE_CHECK(json[key].is_string(), "finetune config: ", key, " must be a string");
    p = parse_pooling(json[key].get<std::string>());
  }
  template <typename T>
  void operator()(const char* key, T& value) {
    seen.insert(key);
    if (!json.contains(key)) return;
    const ConfigJson& j = json[key];
    if constexpr (std::is_same_v<T, std::string>) {
      ECMOE_CHECK(j.is_string(), "finetune config: ", key, " must be a string, got ",
                  json_excerpt(j));
      value = j.get<std::string>();
    } else if constexpr (std::is_floating_point_v<T>) {
      ECMOE_CHECK(j.is_number(), "finetune config: ", key, " must be a number, got ",
                  json_excerpt(j));
      value = T(j.get<double>());
    } else if constexpr (std::is_unsigned_v<T>) {
      ECMOE_CHECK(j.is_number_unsigned(), "finetune config: ", key,
                  " must be a non-negative integer, got ", json_excerpt(j));
      value = j.get<T>();
    } else {
      ECMOE_CHECK(j.is_number_integer(), "finetune config: ", key, " must be an integer, got ",
                  json_excerpt(j));
      const int64_t x = j.get<int64_t>();
      ECMOE_CHECK(x >= int64_t(std::numeric_limits<T>::min()) &&
                      x <= int64_t(std::numeric_limits<T>::max()),
                  "finetune config: ", key, " is out of range: ", json_excerpt(j));
      value = T(x);
    }
  }
};

}  // namespace

float FinetuneConfig::lr_at(int64_t step, int64_t total) const {
  const int64_t warmup = std::max<int64_t>(1, int64_t(std::llround(warmup_fraction * total)));
  if (step < warmup) return peak_lr * float(step + 1) / float(warmup);
  // From peak at the end of warm-up down to peak/(rest+1) at the last step: never a wasted 0.
  const int64_t rest = std::max<int64_t>(1, total - warmup);
  return peak_lr * float(std::max<int64_t>(1, total - step)) / float(rest + 1);
}

int64_t FinetuneConfig::resolved_eval_interval(int64_t total) const {
  return eval_interval > 0 ? eval_interval : std::max<int64_t>(1, total / 5);
}

void FinetuneConfig::validate() const {
  ECMOE_CHECK(!checkpoint.empty(), "finetune: no checkpoint given (--checkpoint PATH)");
  ECMOE_CHECK(!task.empty(), "finetune: no task given (--task NAME, or --train FILE)");
  const bool files = !train_file.empty() || !dev_file.empty() || !test_file.empty();
  ECMOE_CHECK(task != "tsv" || !train_file.empty(),
              "finetune: task tsv needs a training file (--train FILE)");
  ECMOE_CHECK(task == "tsv" || !files,
              "finetune: train_file, dev_file and test_file (--train, "
              "--dev, --test) go with task tsv, not '",
              task,
              "' (tsv:DIR reads DIR/train.tsv, "
              "DIR/dev.tsv and DIR/test.tsv)");
  ECMOE_CHECK(!text_column.empty() && !label_column.empty(),
              "finetune: text_column and label_column must not be empty");
  ECMOE_CHECK(dev_fraction > 0 && dev_fraction < 1, "finetune: dev_fraction must be in (0, 1)");
  ECMOE_CHECK(max_len == 0 || max_len >= 2, "finetune: max_len must be 0 or at least 2");
  ECMOE_CHECK(steps >= 0 && token_budget >= 1 && max_train_examples >= 0,
              "finetune: steps and max_train_examples must be non-negative, token_budget positive");
  ECMOE_CHECK(batch_size >= 1 && eval_batch_size >= 1, "finetune: batch sizes must be positive");
  ECMOE_CHECK(std::isfinite(peak_lr) && peak_lr > 0, "finetune: peak_lr must be positive");
  ECMOE_CHECK(warmup_fraction >= 0 && warmup_fraction < 1,
              "finetune: warmup_fraction must be in [0, 1)");
  ECMOE_CHECK(weight_decay >= 0 && clip_norm >= 0 && head_init_std >= 0,
              "finetune: weight_decay, clip_norm and head_init_std must be non-negative");
  ECMOE_CHECK(eval_interval >= 0, "finetune: eval_interval must be non-negative");
  ECMOE_CHECK(patience >= 0, "finetune: patience must be non-negative");
}

ConfigJson finetune_config_to_json(const FinetuneConfig& config) {
  Writer w;
  visit_fields(w, config);
  return w.json;
}

FinetuneConfig finetune_config_from_json(const ConfigJson& json) {
  ECMOE_CHECK(json.is_object(), "finetune config must be a JSON object");
  FinetuneConfig config;
  Reader r{json, {}};
  visit_fields(r, config);
  for (const auto& [key, value] : json.items())
    ECMOE_CHECK(r.seen.count(key), "finetune config: unknown key '", key, "'");
  return config;
}

}  // namespace ecmoe::finetune
