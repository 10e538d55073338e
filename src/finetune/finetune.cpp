#include "finetune/finetune.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <span>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "core/timer.h"
#include "data/checksum.h"
#include "data/tokenizer.h"
#include "finetune/builtin_tasks.h"
#include "finetune/classifier_head.h"
#include "finetune/encode.h"
#include "io/atomic_file.h"
#include "io/dir_lock.h"
#include "io/output_dir.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;

namespace ecmoe::finetune {

namespace {

// Streams of Rng(config.seed, ·): disjoint uses of the one seed.
constexpr uint64_t kHeadInitStream = streams::kFinetuneHeadInit;
constexpr uint64_t kNoiseStream = streams::kFinetuneJitter;
constexpr uint64_t kOrderStream = streams::kFinetuneOrder;  // + 2·epoch (+ 1)

// The tokenizer the encoder was trained with: another one would give its embeddings other
// meanings, so the file's checksum must be the one the checkpoint recorded.
data::Tokenizer load_matching_tokenizer(const FinetuneConfig& config, const Checkpoint& ck) {
  return load_checkpoint_tokenizer(ck, config.tokenizer, "--set tokenizer=PATH");
}

// Training order: each epoch is a fresh permutation of the split (Rng(seed, epoch) keys), cut
// into chunks of kBucketBatches batches; within a chunk the examples are sorted by length and the
// chunk's batches are put in a random order. Batches then hold sequences of similar lengths and
// need little padding (padded tokens cost as much as real ones), while which examples share a
// chunk, and which batch comes first, stay random.
class BatchOrder {
 public:
  static constexpr int64_t kBucketBatches = 8;
  BatchOrder(const EncodedSplit& split, int batch_size, uint64_t seed)
      : split_(&split), n_(int64_t(split.tokens.size())), batch_size_(batch_size), seed_(seed) {}
  std::vector<int64_t> batch(int64_t step) {
    std::vector<int64_t> out(batch_size_);
    for (int j = 0; j < batch_size_; ++j) {
      const int64_t i = step * batch_size_ + j;
      const int64_t epoch = i / n_;
      if (epoch != epoch_) shuffle(epoch);
      out[j] = order_[i % n_];
    }
    return out;
  }

 private:
  void shuffle(int64_t epoch) {
    const Rng rng(seed_, kOrderStream + 2 * uint64_t(epoch));
    const Rng batch_rng(seed_, kOrderStream + 2 * uint64_t(epoch) + 1);
    std::vector<std::pair<uint64_t, int64_t>> keys(n_);
    for (int64_t i = 0; i < n_; ++i) keys[i] = {rng.bits(uint64_t(i)), i};
    std::sort(keys.begin(), keys.end());
    std::vector<int64_t> perm(n_);
    for (int64_t i = 0; i < n_; ++i) perm[i] = keys[i].second;
    const auto length = [&](int64_t i) { return split_->tokens[i].size(); };
    order_.clear();
    const int64_t chunk = kBucketBatches * batch_size_;
    for (int64_t c0 = 0; c0 < n_; c0 += chunk) {
      const auto first = perm.begin() + c0, last = perm.begin() + std::min(n_, c0 + chunk);
      std::stable_sort(first, last, [&](int64_t a, int64_t b) { return length(a) < length(b); });
      std::vector<std::pair<uint64_t, int64_t>> batches;  // (key, start)
      for (int64_t b0 = c0; b0 < c0 + (last - first); b0 += batch_size_)
        batches.push_back({batch_rng.bits(uint64_t(b0)), b0});
      std::sort(batches.begin(), batches.end());
      for (const auto& [key, b0] : batches)
        for (int64_t i = b0; i < std::min<int64_t>(b0 + batch_size_, c0 + (last - first)); ++i)
          order_.push_back(perm[i]);
    }
    epoch_ = epoch;
  }
  const EncodedSplit* split_;
  int64_t n_;
  int batch_size_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

// config.steps, or the number of the run's own batches (padded as they will be) that fill the
// token budget.
int64_t planned_steps(const FinetuneConfig& config, const EncodedSplit& train) {
  if (config.steps > 0) return config.steps;
  constexpr int64_t kMinSteps = 20, kMaxSteps = 2000;
  BatchOrder order(train, config.batch_size, config.seed);
  int64_t tokens = 0, steps = 0;
  while (steps < kMaxSteps && tokens < config.token_budget) {
    size_t longest = 1;
    for (const int64_t i : order.batch(steps)) longest = std::max(longest, train.tokens[i].size());
    tokens += int64_t(config.batch_size) * int64_t(longest);
    ++steps;
  }
  return std::max(kMinSteps, steps);
}

struct Classifier {
  Transformer& model;
  const FlatBuffer& params;
  const FlatBuffer& head;
  Pooling pooling;
  int classes;
};

// Predictions for a whole split, in batches of similar lengths (sorted by length, then index, so
// batches need little padding; the grouping is fixed, so results are reproducible).
std::vector<int> predict(const Classifier& c, const EncodedSplit& split, int batch_size,
                         HeadState& state) {
  const int64_t n = int64_t(split.tokens.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return split.tokens[a].size() < split.tokens[b].size();
  });
  std::vector<int> predicted(n);
  std::vector<int32_t> labels;
  const int d = c.model.config().d_model;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, n - start);
    const std::span<const int64_t> idx(order.data() + start, size_t(count));
    const Batch batch = make_padded_batch(split, idx, labels);
    c.model.forward_hidden(c.params, batch, /*training=*/false, 0);
    const HeadShape shape{batch.batch_size, batch.seq_len, d, c.classes};
    head_forward(state, c.model.final_hidden(), batch.valid_len.data(), nullptr,
                 c.head.get("head.weight"), c.head.get("head.bias"), c.pooling, shape);
    for (int b = 0; b < batch.batch_size; ++b)
      predicted[idx[b]] = head_prediction(state, b, c.classes);
  }
  return predicted;
}

ConfigJson metrics_json(const ClassMetrics& m) {
  ConfigJson j;
  j["accuracy"] = m.accuracy;
  j["macro_f1"] = m.macro_f1;
  j["examples"] = m.examples;
  return j;
}

}  // namespace

FinetuneResult run_finetune(const FinetuneConfig& config, const FinetuneOptions& options) {
  config.validate();
  // Before the task is loaded (maybe fetched): an --out that cannot be written fails now.
  if (!config.out.empty()) prepare_output_dir(config.out, "finetune --out");
  const TaskData task = load_task(config.task, {config.cache_dir, "", nullptr});
  return run_finetune(config, task, options);
}

FinetuneResult run_finetune(const FinetuneConfig& config, const TaskData& task,
                            const FinetuneOptions& options) {
  const double t_start = now_seconds();
  config.validate();
  // The output folder is checked and locked before any work, and held until the result is in it.
  const DirLock lock =
      config.out.empty() ? DirLock() : claim_output_dir(config.out, "finetune --out");
  check_task(task);
  const Checkpoint ck = Checkpoint::open(config.checkpoint);
  const ModelConfig& model_config = ck.config().model;
  ECMOE_CHECK(model_config.kind == ModelKind::kEncoder, "checkpoint ", ck.path(),
              " holds a decoder; fine-tuning a classifier needs an encoder");
  ECMOE_CHECK(config.max_len <= model_config.seq_len, "finetune: max_len ", config.max_len,
              " exceeds the model's seq_len ", model_config.seq_len);
  const int max_len = config.max_len > 0 ? config.max_len : model_config.seq_len;
  const data::Tokenizer tokenizer = load_matching_tokenizer(config, ck);
  const size_t n_train = config.max_train_examples > 0
                             ? std::min(task.train.size(), size_t(config.max_train_examples))
                             : task.train.size();
  const EncodedSplit train =
      encode_split(std::vector<Example>(task.train.begin(), task.train.begin() + int64_t(n_train)),
                   tokenizer, max_len);
  const EncodedSplit dev = encode_split(task.dev, tokenizer, max_len);
  const EncodedSplit test = encode_split(task.test, tokenizer, max_len);
  const int classes = int(task.labels.size());
  const int d = model_config.d_model;

  Transformer model(model_config);
  FlatBuffer params(model.table()), grads(model.table());
  ck.load_params(params);
  const TensorTable head_tab = head_table(d, classes);
  FlatBuffer head(head_tab), head_grads(head_tab);
  init_head(head, config.head_init_std, mix64(config.seed ^ kHeadInitStream));
  AdamWConfig adam_config;
  adam_config.weight_decay = config.weight_decay;
  AdamW adam(model.table(), adam_config), head_adam(head_tab, adam_config);

  const int64_t steps = planned_steps(config, train);
  const LrSchedule schedule = config.schedule(steps);
  const int64_t eval_interval = config.resolved_eval_interval(steps);

  FinetuneResult result;
  result.task = task.name;
  result.checkpoint = config.checkpoint;
  result.labels = task.labels;
  result.planned_steps = steps;
  result.train_examples = int64_t(train.tokens.size());
  result.dev_examples = int64_t(dev.tokens.size());
  result.test_examples = int64_t(test.tokens.size());
  const int majority = majority_class(train.labels, classes);
  result.majority_baseline =
      class_metrics(test.labels, std::vector<int>(test.labels.size(), majority), classes);

  HeadState state;
  const Classifier classifier{model, params, head, config.pooling, classes};
  FlatBuffer best_params = params, best_head = head;
  double best_dev = -1;
  int evals_without_gain = 0;
  double loss_sum = 0;
  int64_t loss_steps = 0;
  BatchOrder order(train, config.batch_size, config.seed);
  const Rng noise(config.seed, kNoiseStream);
  std::vector<int32_t> labels;
  FloatVec d_hidden;

  const auto evaluate_dev = [&](int64_t step) {
    const double t0 = now_seconds();
    const ClassMetrics m =
        class_metrics(dev.labels, predict(classifier, dev, config.eval_batch_size, state), classes);
    result.eval_seconds += now_seconds() - t0;
    result.history.push_back({step, loss_steps ? loss_sum / double(loss_steps) : 0.0, m});
    if (options.progress)
      std::fprintf(options.progress, "finetune %s step %lld: train loss %.4f, dev accuracy %.4f\n",
                   task.name.c_str(), (long long)step, result.history.back().train_loss,
                   m.accuracy);
    loss_sum = 0;
    loss_steps = 0;
    if (m.accuracy > best_dev) {
      best_dev = m.accuracy;
      best_params = params;
      best_head = head;
      result.best_step = step;
      result.dev = m;
      evals_without_gain = 0;
    } else {
      ++evals_without_gain;
    }
  };

  for (int64_t s = 0; s < steps; ++s) {
    const double t0 = now_seconds();
    const std::vector<int64_t> idx = order.batch(s);
    const Batch batch = make_padded_batch(train, idx, labels);
    grads.zero();
    head_grads.zero();
    const ForwardResult f =
        model.forward_hidden(params, batch, /*training=*/true, noise.bits(uint64_t(s)));
    const HeadShape shape{batch.batch_size, batch.seq_len, d, classes};
    const double loss =
        head_forward(state, model.final_hidden(), batch.valid_len.data(), labels.data(),
                     head.get("head.weight"), head.get("head.bias"), config.pooling, shape);
    ECMOE_CHECK(std::isfinite(loss) && std::isfinite(f.loss), "fine-tuning diverged at step ",
                s + 1, ": the loss is ", loss + f.loss, "; lower peak_lr");
    d_hidden.assign(size_t(batch.token_count()) * d, 0.f);
    head_backward(d_hidden.data(), head_grads.get("head.weight"), head_grads.get("head.bias"),
                  state, head.get("head.weight"), shape);
    model.backward_from_hidden(params, grads, d_hidden.data());
    FlatBuffer* const both[] = {&grads, &head_grads};
    const float norm = clip_grad_norm(both, config.clip_norm);
    ECMOE_CHECK(std::isfinite(norm), "fine-tuning diverged at step ", s + 1,
                ": the gradient norm is ", norm, "; lower peak_lr");
    const float lr = schedule.lr_at(s);
    adam.step(params, grads, lr);
    head_adam.step(head, head_grads, lr);
    loss_sum += loss;
    ++loss_steps;
    result.train_seconds += now_seconds() - t0;
    result.steps = s + 1;
    if (result.steps % eval_interval == 0 || result.steps == steps) {
      evaluate_dev(result.steps);
      if (config.patience > 0 && evals_without_gain >= config.patience && result.steps < steps) {
        result.stopped_early = true;
        break;
      }
    }
  }

  const Classifier best{model, best_params, best_head, config.pooling, classes};
  const double t_test = now_seconds();
  result.test =
      class_metrics(test.labels, predict(best, test, config.eval_batch_size, state), classes);
  result.eval_seconds += now_seconds() - t_test;
  result.seconds = now_seconds() - t_start;
  if (!config.out.empty()) {
    write_file_atomically((fs::path(config.out) / "config.json").string(),
                          finetune_config_to_json(config).dump(2) + "\n");
    write_file_atomically((fs::path(config.out) / "result.json").string(),
                          result_to_json(result).dump(2) + "\n");
  }
  return result;
}

ConfigJson result_to_json(const FinetuneResult& r) {
  ConfigJson j;
  j["task"] = r.task;
  j["checkpoint"] = r.checkpoint;
  j["classes"] = r.labels.size();
  j["examples"] = {{"train", r.train_examples}, {"dev", r.dev_examples}, {"test", r.test_examples}};
  j["dev"] = metrics_json(r.dev);
  j["test"] = metrics_json(r.test);
  j["majority_baseline"] = metrics_json(r.majority_baseline);
  j["best_step"] = r.best_step;
  j["planned_steps"] = r.planned_steps;
  j["steps"] = r.steps;
  j["stopped_early"] = r.stopped_early;
  j["seconds"] = r.seconds;
  j["train_seconds"] = r.train_seconds;
  j["eval_seconds"] = r.eval_seconds;
  ConfigJson history = ConfigJson::array();
  for (const EvalPoint& p : r.history)
    history.push_back({{"step", p.step},
                       {"train_loss", p.train_loss},
                       {"dev_accuracy", p.dev.accuracy},
                       {"dev_macro_f1", p.dev.macro_f1}});
  j["history"] = history;
  return j;
}

}  // namespace ecmoe::finetune
