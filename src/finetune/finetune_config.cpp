#include "finetune/finetune_config.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/config_fields.h"

namespace ecmoe::finetune {

namespace {

// The one list of fields, walked by the writer and the reader.
template <typename Visitor>
void visit_fields(Visitor& v, FinetuneConfig& c) {
  v.field("checkpoint", c.checkpoint);
  v.field("task", c.task);
  v.field("train_file", c.train_file);
  v.field("dev_file", c.dev_file);
  v.field("test_file", c.test_file);
  v.field("text_column", c.text_column);
  v.field("text_pair_column", c.text_pair_column);
  v.field("label_column", c.label_column);
  v.field("dev_fraction", c.dev_fraction);
  v.field("tokenizer", c.tokenizer);
  v.field("cache_dir", c.cache_dir);
  v.field("pooling", NamedEnum<Pooling>{c.pooling, parse_pooling, pooling_name});
  v.field("max_len", c.max_len);
  v.field("steps", c.steps);
  v.field("token_budget", c.token_budget);
  v.field("max_train_examples", c.max_train_examples);
  v.field("batch_size", c.batch_size);
  v.field("eval_batch_size", c.eval_batch_size);
  v.field("peak_lr", c.peak_lr);
  v.field("warmup_fraction", c.warmup_fraction);
  v.field("weight_decay", c.weight_decay);
  v.field("clip_norm", c.clip_norm);
  v.field("head_init_std", c.head_init_std);
  v.field("eval_interval", c.eval_interval);
  v.field("patience", c.patience);
  v.field("seed", c.seed);
  v.field("precision", NamedEnum<Precision>{c.precision, parse_precision, precision_name});
  v.field("out", c.out);
}

}  // namespace

LrSchedule FinetuneConfig::schedule(int64_t total) const {
  const int64_t warmup = std::max<int64_t>(1, int64_t(std::llround(warmup_fraction * total)));
  LrSchedule s{.peak_lr = peak_lr,
               .warmup_steps = std::min(warmup, total),
               .decay = LrDecay::Linear,
               .total_steps = total};
  s.validate();
  return s;
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
  FinetuneConfig copy = config;
  ConfigWriter w;
  visit_fields(w, copy);
  return w.result;
}

FinetuneConfig finetune_config_from_json(const ConfigJson& json) {
  ECMOE_CHECK(json.is_object(), "finetune config must be a JSON object");
  FinetuneConfig config;
  ConfigReader r(json, "finetune config");
  visit_fields(r, config);
  r.check_unknown();
  return config;
}

}  // namespace ecmoe::finetune
