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
#include "finetune/encoder_training.h"
#include "finetune/pooled_rows.h"
#include "finetune/predict.h"
#include "finetune/saved_model.h"
#include "finetune/tsv_table.h"
#include "io/atomic_file.h"
#include "io/dir_lock.h"
#include "io/output_dir.h"
#include "model/transformer.h"
#include "optim/adamw.h"
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

ConfigJson metrics_json(const ClassMetrics& m) {
  ConfigJson j;
  j["accuracy"] = m.accuracy;
  j["macro_f1"] = m.macro_f1;
  j["examples"] = m.examples;
  return j;
}

// metrics_json with per-class figures and the confusion matrix, labels by name.
ConfigJson detailed_metrics_json(const ClassMetrics& m, const std::vector<std::string>& labels) {
  ConfigJson j = metrics_json(m);
  if (m.support.size() != labels.size()) return j;
  ConfigJson per_class = ConfigJson::array();
  for (size_t c = 0; c < labels.size(); ++c)
    per_class.push_back({{"label", labels[c]},
                         {"precision", m.precision[c]},
                         {"recall", m.recall[c]},
                         {"f1", m.f1[c]},
                         {"support", m.support[c]}});
  j["per_class"] = per_class;
  j["confusion"] = {{"rows", "gold"}, {"columns", "predicted"}, {"matrix", m.confusion}};
  return j;
}

// "a, b, c" (at most 10 names, then "...").
std::string name_list(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < 10; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > 10) text += ", ...";
  return text;
}

// One line per lopsided split: classes of train it lacks, or fewer examples than classes.
void check_balance(const char* split, const EncodedSplit& s, const std::vector<int>& train_counts,
                   const std::vector<std::string>& labels, std::vector<std::string>& warnings) {
  if (s.labels.empty()) return;
  std::vector<int64_t> counts(labels.size(), 0);
  for (const int l : s.labels) counts[size_t(l)] += 1;
  std::vector<std::string> missing;
  for (size_t c = 0; c < labels.size(); ++c)
    if (counts[c] == 0 && train_counts[c] > 0) missing.push_back(labels[c]);
  if (s.labels.size() < labels.size())
    warnings.push_back(std::string("the ") + split + " split has " +
                       std::to_string(s.labels.size()) + " examples for " +
                       std::to_string(labels.size()) + " classes: its figures rest on very little");
  else if (!missing.empty())
    warnings.push_back(std::string("the ") + split + " split has no example of " +
                       std::to_string(missing.size()) + " of the " + std::to_string(labels.size()) +
                       " classes (" + name_list(missing) + "): its figures say nothing about them");
}

// What the run needs where the encoder runs (a device's free memory, or the host's), refused in
// one line before any work as training refuses its own: the checkpoint's model at the fine-tuning
// batch sizes over max_len tokens (train/memory_estimate.h; its language-model head, which
// fine-tuning does not run, makes it an upper bound), named by the fine-tuning keys.
void check_finetune_memory(const TrainConfig& pretrain, const ModelConfig& model,
                           const FinetuneConfig& config, int max_len, const TrainDevice* device) {
  TrainConfig sized = pretrain;
  sized.model = model;
  sized.model.seq_len = max_len;
  sized.batch_size = config.batch_size;
  sized.eval.batch_size = config.eval_batch_size;
  sized.eval.batches = 1;
  check_training_memory(sized, device,
                        {{"eval.batch_size", "eval_batch_size"}, {"model.seq_len", "max_len"}});
}

// predict.h's TSV of each example of a split (gold column included), in the split's order.
void write_predictions(const std::string& path, const std::vector<Example>& examples,
                       const Classified& out, const std::vector<std::string>& labels, bool pairs) {
  const PredictionFormat format{&labels, true, pairs};
  write_file_atomically(path, [&](AtomicFileWriter& w) {
    w.write(prediction_tsv_header(format));
    for (size_t i = 0; i < examples.size(); ++i)
      w.write(prediction_tsv_row(format, examples[i], examples[i].label, out.predicted[i],
                                 out.probabilities.data() + i * labels.size()));
  });
}

}  // namespace

FinetuneResult run_finetune(const FinetuneConfig& config, const FinetuneOptions& options) {
  config.validate();
  // Before the task is loaded (maybe fetched): an --out that cannot be written fails now.
  if (!config.out.empty()) prepare_output_dir(config.out, "finetune --out");
  TaskSourceOptions source;
  source.cache_dir = config.cache_dir;
  source.columns = {config.text_column, config.text_pair_column, config.label_column};
  source.files = {config.train_file, config.dev_file, config.test_file};
  source.dev_fraction = config.dev_fraction;
  const TaskData task = load_task(config.task, source);
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
  ModelConfig model_config = ck.config().model;
  model_config.precision = config.precision;  // fine-tuning's own, not the checkpoint's
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
  const bool has_test = !test.tokens.empty();

  FinetuneResult result;
  result.precision = config.precision;
  result.warnings = task.warnings;
  if (n_train < task.train.size())
    result.warnings.push_back("only " + std::to_string(n_train) + " of the " +
                              std::to_string(task.train.size()) +
                              " training examples are used (max_train_examples; "
                              "--set max_train_examples=0 for all)");
  if (train.truncated + dev.truncated + test.truncated > 0) {
    std::string counts;
    for (const auto& [name, split] :
         {std::pair{"train", &train}, std::pair{"dev", &dev}, std::pair{"test", &test}})
      if (!split->tokens.empty())
        counts += std::string(counts.empty() ? "" : ", ") + std::to_string(split->truncated) +
                  " of " + std::to_string(split->tokens.size()) + " " + name;
    result.warnings.push_back("texts longer than max_len " + std::to_string(max_len) +
                              " tokens were cut to it: " + counts + " examples");
  }
  const std::vector<int> train_counts = [&] {
    std::vector<int> counts(size_t(classes), 0);
    for (const int l : train.labels) counts[size_t(l)] += 1;
    return counts;
  }();
  check_balance("dev", dev, train_counts, task.labels, result.warnings);
  check_balance("test", test, train_counts, task.labels, result.warnings);
  if (!has_test)
    result.warnings.push_back(
        "no test split (no test file): the figures reported are dev's, and dev also chose the "
        "kept parameters, so they are optimistic; give a test file for an unbiased figure");
  if (options.warnings)
    for (const std::string& w : result.warnings)
      std::fprintf(options.warnings, "ecmoe: warning: %s\n", w.c_str());

  check_finetune_memory(ck.config(), model_config, config, max_len, options.device);
  Transformer model(model_config);
  // The kept (best) parameters; first the checkpoint's.
  FlatBuffer best_params(model.table());
  ck.load_params(best_params);
  AdamWConfig adam_config;
  adam_config.weight_decay = config.weight_decay;
  EncoderTraining encoder(model, best_params, adam_config, options.device);
  nn::Backend& backend = model.nn_backend();
  const TensorTable head_tab = head_table(d, classes);
  FlatBuffer head(head_tab), head_grads(head_tab);
  init_head(head, config.head_init_std, mix64(config.seed ^ kHeadInitStream));
  AdamW head_adam(head_tab, adam_config);

  const int64_t steps = planned_steps(config, train);
  const LrSchedule schedule = config.schedule(steps);
  const int64_t eval_interval = config.resolved_eval_interval(steps);

  result.task = task.name;
  result.checkpoint = config.checkpoint;
  result.device = options.device ? options.device->name : "cpu";
  result.labels = task.labels;
  result.sources = task.sources;
  if (result.sources.train.empty()) result.sources = {"train split", "dev split", "test split"};
  if (!has_test) result.sources.test.clear();
  result.has_test = has_test;
  result.planned_steps = steps;
  result.train_examples = int64_t(train.tokens.size());
  result.dev_examples = int64_t(dev.tokens.size());
  result.test_examples = int64_t(test.tokens.size());
  const int majority = majority_class(train.labels, classes);
  const EncodedSplit& scored = has_test ? test : dev;  // the split of the reported figures
  result.majority_baseline =
      class_metrics(scored.labels, std::vector<int>(scored.labels.size(), majority), classes);

  HeadState state;
  PooledRows rows;
  const Classifier classifier{model, encoder.params(), head, config.pooling, classes};
  FlatBuffer best_head = head;
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
    const ClassMetrics m = class_metrics(
        dev.labels, classify(classifier, dev, config.eval_batch_size).predicted, classes);
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
      encoder.copy_params_to(best_params);
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
    encoder.zero_grads();
    head_grads.zero();
    const ForwardResult f =
        model.forward_hidden_on_backend(encoder.params(), batch,
                                        /*training=*/true, noise.bits(uint64_t(s)));
    const HeadShape shape{batch.batch_size, batch.seq_len, d, classes};
    // The head on the host, on the rows it pools; its gradient back to the encoder's memory.
    const float* hidden =
        rows.to_host(backend, model.final_hidden(), batch.valid_len.data(), config.pooling, shape);
    const double loss =
        head_forward(state, hidden, batch.valid_len.data(), labels.data(), head.get("head.weight"),
                     head.get("head.bias"), config.pooling, shape);
    ECMOE_CHECK(std::isfinite(loss) && std::isfinite(f.loss), "fine-tuning diverged at step ",
                s + 1, ": the loss is ", loss + f.loss, "; lower peak_lr");
    d_hidden.assign(size_t(batch.token_count()) * d, 0.f);
    head_backward(d_hidden.data(), head_grads.get("head.weight"), head_grads.get("head.bias"),
                  state, head.get("head.weight"), shape);
    model.backward_from_hidden_on_backend(encoder.params(), encoder.grads(),
                                          rows.to_backend(backend, d_hidden.data(), shape));
    const float norm = encoder.clip_grad_norm(head_grads, config.clip_norm);
    ECMOE_CHECK(std::isfinite(norm), "fine-tuning diverged at step ", s + 1,
                ": the gradient norm is ", norm, "; lower peak_lr");
    const float lr = schedule.lr_at(s);
    encoder.adamw_step(lr);
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

  // The kept parameters where the encoder runs (training is over: they replace the last step's).
  encoder.set_params(best_params);
  const Classifier best{model, encoder.params(), best_head, config.pooling, classes};
  const double t_test = now_seconds();
  const Classified final_out = classify(best, scored, config.eval_batch_size);
  if (has_test) result.test = class_metrics(test.labels, final_out.predicted, classes);
  result.eval_seconds += now_seconds() - t_test;
  result.seconds = now_seconds() - t_start;
  if (!config.out.empty()) {
    if (options.save_model) {
      ClassifierInfo info;
      info.pretrain = ck.config();
      info.finetune = config;
      info.labels = task.labels;
      info.pooling = config.pooling;
      info.max_len = max_len;
      info.pairs = task.pairs;
      info.data = ck.data();
      if (!config.tokenizer.empty()) info.data.tokenizer = config.tokenizer;
      info.pretrain_checkpoint = config.checkpoint;
      info.pretrain_step = ck.step();
      result.model_file = (fs::path(config.out) / kClassifierFile).string();
      save_classifier(result.model_file, info, best_params, best_head);
    }
    write_predictions((fs::path(config.out) / "predictions.tsv").string(),
                      has_test ? task.test : task.dev, final_out, task.labels, task.pairs);
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
  j["device"] = r.device;
  j["precision"] = precision_name(r.precision);
  j["classes"] = r.labels.size();
  j["labels"] = r.labels;
  j["examples"] = {{"train", r.train_examples}, {"dev", r.dev_examples}, {"test", r.test_examples}};
  // What each split is: GLUE's dev file is this task's test split, a carved dev split says so.
  j["splits"] = {{"train", r.sources.train},
                 {"dev", r.sources.dev},
                 {"test", r.has_test ? ConfigJson(r.sources.test) : ConfigJson()}};
  j["dev"] = detailed_metrics_json(r.dev, r.labels);
  j["test"] = r.has_test ? detailed_metrics_json(r.test, r.labels) : ConfigJson();
  j["majority_baseline"] = metrics_json(r.majority_baseline);
  j["majority_baseline_split"] = r.has_test ? "test" : "dev";
  j["best_step"] = r.best_step;
  j["planned_steps"] = r.planned_steps;
  j["steps"] = r.steps;
  j["stopped_early"] = r.stopped_early;
  j["seconds"] = r.seconds;
  j["train_seconds"] = r.train_seconds;
  j["eval_seconds"] = r.eval_seconds;
  j["model"] = r.model_file;
  j["warnings"] = r.warnings;
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
