// `ecmoe bench attention`: the attention op alone (nn::Backend::attention_forward and
// attention_backward over a [batch, seq, 3·d] qkv), forward and backward timed apart, the device
// synchronised around each, median of the timed runs; on the CPU or on `--device cuda`, whose
// path (the fused flash kernels, or cuBLAS and a softmax kernel) ECMOE_CUDA_ATTENTION picks as
// in training. FLOPs are counted as FlashAttention's papers count them, so that the rate reads
// beside theirs and beside the PyTorch peer's (bench/bench_attention_torch.py): the forward's two
// products, 4·D FLOPs per visible (query, key) pair and head, the backward 2.5 times that.
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/bench_layer.h"
#include "cli/commands.h"
#include "cli/train_device.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"
#include "nn/attention.h"
#include "nn/backend.h"
#include "nn/buffer.h"
#include "train/memory_estimate.h"
#include "train/train_device.h"

namespace ecmoe::cli {

namespace {

struct AttentionBenchOptions {
  int batch = 32, heads = 4, seq = 128, head_dim = 64;  // configs/small.json's attention
  bool causal = false;
  std::string precision = "fp32";
  std::string device = "cpu";
  int repeats = 10, warmup = 2;
  bool json = false;
};

// The (query, key) pairs a head computes: all T² of them, or the causal triangle's T(T+1)/2.
double visible_pairs(const nn::AttentionConfig& cfg) {
  const double t = cfg.seq_len;
  return cfg.causal ? t * (t + 1) / 2 : t * t;
}

// Bytes the run holds in the device's memory: qkv and its gradient, the output and its
// gradient, and what the forward saves for the backward.
double attention_bench_bytes(const nn::Backend& be, const nn::AttentionConfig& cfg) {
  const double rows = double(cfg.batch) * cfg.seq_len, d = cfg.model_dim();
  return 4.0 * (2 * rows * 3 * d + 2 * rows * d + double(be.attention_saved_floats(cfg)));
}

void run_attention_bench(const AttentionBenchOptions& o) {
  ECMOE_CHECK(
      o.batch > 0 && o.heads > 0 && o.seq > 0 && o.head_dim > 0 && o.repeats > 0,
      "bench attention: --batch, --heads, --seq, --head-dim and --repeats must be positive");
  ECMOE_CHECK(int64_t(o.batch) * o.seq * 3 * o.heads * o.head_dim < (int64_t(1) << 31),
              "bench attention: --batch x --seq x 3 x --heads x --head-dim must stay below 2^31 "
              "elements");
  nn::AttentionConfig cfg;
  cfg.batch = o.batch;
  cfg.seq_len = o.seq;
  cfg.n_heads = o.heads;
  cfg.head_dim = o.head_dim;
  cfg.causal = o.causal;
  cfg.precision = parse_precision(o.precision);
  const TrainDevice* device = train_device(o.device);
  nn::Backend& be = device ? *device->nn : nn::cpu_backend();
  const std::string what = "bench attention (--batch " + std::to_string(o.batch) + ", --heads " +
                           std::to_string(o.heads) + ", --seq " + std::to_string(o.seq) +
                           ", --head-dim " + std::to_string(o.head_dim) + ")";
  const std::optional<DeviceMemory> memory = device_memory(device);
  check_bytes_fit(attention_bench_bytes(be, cfg), what, "", memory ? &*memory : nullptr);

  const int64_t rows = int64_t(o.batch) * o.seq, d = cfg.model_dim();
  const Rng rng(7, 1);
  std::vector<float> host_qkv(size_t(rows * 3 * d)), host_dout(size_t(rows * d));
  for (size_t i = 0; i < host_qkv.size(); ++i) host_qkv[i] = rng.normal(i);
  for (size_t i = 0; i < host_dout.size(); ++i)
    host_dout[i] = 1e-2f * rng.normal(host_qkv.size() + i);
  nn::Buffer<float> qkv, dqkv, out, dout, saved;
  dqkv.resize(be, rows * 3 * d);
  out.resize(be, rows * d);
  saved.resize(be, be.attention_saved_floats(cfg));
  qkv.upload(be, host_qkv);
  dout.upload(be, host_dout);
  be.synchronize();

  const ForwardBackwardMs runs = time_forward_backward(
      o.warmup, o.repeats,
      [&] { be.attention_forward(out.data(), saved.data(), qkv.data(), cfg, nullptr); },
      [&] {
        be.attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), saved.data(), cfg,
                              nullptr, nn::GradWrite::kOverwrite);
      },
      [&] { be.synchronize(); });

  const double fwd_flops = 4.0 * visible_pairs(cfg) * o.head_dim * o.batch * o.heads;
  const double bwd_flops = 2.5 * fwd_flops;
  const double t = median(runs.total), tf = median(runs.forward), tb = median(runs.backward);
  const std::string path = attention_path(o.device, cfg);
  if (o.json) {
    const nlohmann::json j = {{"device", o.device},
                              {"path", path},
                              {"batch", o.batch},
                              {"heads", o.heads},
                              {"seq", o.seq},
                              {"head_dim", o.head_dim},
                              {"causal", o.causal},
                              {"precision", precision_name(cfg.precision)},
                              {"threads", thread_count()},
                              {"repeats", o.repeats},
                              {"ms", t},
                              {"forward_ms", tf},
                              {"backward_ms", tb},
                              {"forward_flops", fwd_flops},
                              {"backward_flops", bwd_flops},
                              {"forward_tflops", fwd_flops / tf * 1e-9},
                              {"backward_tflops", bwd_flops / tb * 1e-9},
                              {"tflops", (fwd_flops + bwd_flops) / t * 1e-9}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf(
      "attention on %s (%s path), batch %d, %d heads of %d, seq %d, %s, %s%s\n", o.device.c_str(),
      path.c_str(), o.batch, o.heads, o.head_dim, o.seq, o.causal ? "causal" : "not causal",
      precision_name(cfg.precision).c_str(),
      o.device == "cpu" ? (", " + std::to_string(thread_count()) + " threads").c_str() : "");
  std::printf("forward+backward: %.3f ms median of %d, %.2f TFLOP/s\n", t, o.repeats,
              (fwd_flops + bwd_flops) / t * 1e-9);
  std::printf("forward:  %.3f ms, %.2f TFLOP/s\n", tf, fwd_flops / tf * 1e-9);
  std::printf("backward: %.3f ms, %.2f TFLOP/s (counted as 2.5x the forward's FLOPs)\n", tb,
              bwd_flops / tb * 1e-9);
}

}  // namespace

void register_bench_attention(CLI::App& bench) {
  static AttentionBenchOptions o;
  auto* cmd = bench.add_subcommand(
      "attention", "Time the attention op alone (forward and backward), beside FLOP rates");
  cmd->add_option("--batch", o.batch, "Sequences")->capture_default_str();
  cmd->add_option("--heads", o.heads)->capture_default_str();
  cmd->add_option("--seq", o.seq, "Tokens per sequence")->capture_default_str();
  cmd->add_option("--head-dim", o.head_dim)->capture_default_str();
  cmd->add_flag("--causal", o.causal, "Causal mask (a decoder's attention)");
  cmd->add_option("--precision", o.precision,
                  "fp32, bf16 (bf16 operands of the products, fp32 softmax), or auto")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  cmd->add_option("--device", o.device,
                  "cpu, or cuda (an ecmoe built with -DECMOE_CUDA=ON; ECMOE_CUDA_ATTENTION=flash|"
                  "cublas picks the path)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--repeats", o.repeats, "Timed runs (the median is reported)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup)->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_flag("--json", o.json, "One JSON object on stdout");
  cmd->callback([] { run_attention_bench(o); });
}

}  // namespace ecmoe::cli
