// estimate_memory against what a model really allocates (glibc's heap counters around building
// the model, its buffers and optimizer and running a training step and an evaluation forward),
// and check_memory on sizes that cannot fit: a one-line error naming the key, at once, with no
// overflow however absurd the sizes.
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "moe/moe_layer.h"
#include "optim/adamw.h"
#include "train/batches.h"
#include "train/memory_estimate.h"
#include "train_test_util.h"

using namespace ecmoe;

namespace {

// Bytes in use on the heap (the main arena and mmapped blocks; the test runs on one thread).
double heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return double(m.uordblks) + double(m.hblkhd);
}

Batch random_batch(const TrainConfig& c, int batch_size, uint64_t step) {
  const BatchSpec spec = batch_spec(c, batch_size);
  std::vector<int32_t> windows(std::size_t(batch_size) * window_width(spec.kind, spec.seq_len));
  const Rng rng(5, step);
  for (std::size_t i = 0; i < windows.size(); ++i)
    windows[i] = data::kFirstOrdinaryId +
                 int32_t(rng.below(i, uint64_t(c.model.vocab_size - data::kFirstOrdinaryId)));
  return make_batch(windows, spec, step);
}

// The heap a run of `c` holds after a training step and an evaluation forward (training), or
// after an evaluation forward alone.
double measured_bytes(const TrainConfig& c, bool training) {
  const double before = heap_in_use();
  Transformer model(c.model);
  FlatBuffer params(model.table()), state(model.state_table());
  model.init_params(params, 1);
  model.init_state(state);
  const Batch eval_batch = random_batch(c, c.eval_batch_size(), 2);
  if (!training) {
    model.forward(params, state, eval_batch, false, 0);
    return heap_in_use() - before;
  }
  FlatBuffer grads(model.table());
  AdamW adam(model.table(), c.optimizer);
  const Batch batch = random_batch(c, c.batch_size, 1);
  model.forward(params, state, batch, true, 1);
  model.backward(params, grads);
  adam.step(params, grads, 1e-3f);
  model.forward(params, state, eval_batch, false, 0);
  return heap_in_use() - before;
}

TrainConfig tiny(ModelKind kind) {
  TrainConfig c = train_test::tiny_config("unused", "unused");
  c.model.kind = kind;
  c.model.vocab_size = 512;
  c.model.seq_len = 32;
  c.model.d_model = 32;
  c.model.d_ff = 64;
  c.batch_size = 8;
  return c;
}

class MemoryEstimateTest : public ::testing::Test {
 protected:
  void SetUp() override { set_thread_count(1); }
  void TearDown() override { set_thread_count(0); }
};

// AddressSanitizer replaces glibc's allocator, so mallinfo2 sees none of the allocations; the
// comparisons with the real heap run in the ordinary build. g++ says so by __SANITIZE_ADDRESS__,
// clang by __has_feature(address_sanitizer).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ECMOE_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ECMOE_TEST_ASAN 1
#endif
constexpr bool kHeapCountersVisible =
#if defined(ECMOE_TEST_ASAN)
    false;
#else
    true;
#endif

TEST_F(MemoryEstimateTest, WithinAFewPercentOfTheRealAllocation) {
  if (!kHeapCountersVisible) GTEST_SKIP() << "mallinfo2 does not see AddressSanitizer's allocator";
  // The first run also holds what the process sets up once (oneDNN's generated kernels, ~0.5 MB;
  // the bf16 ones ~0.1 MB more), which is nobody's config: measure after it.
  measured_bytes(tiny(ModelKind::kEncoder), true);
  TrainConfig bf16 = tiny(ModelKind::kEncoder);  // and oneDNN's bf16 kernels, generated once
  bf16.model.precision = Precision::kBf16;
  measured_bytes(bf16, true);
  // bf16 keeps other buffers (bf16 activations and weight copies, expert_ffn.h).
  for (const Precision precision : {Precision::kFp32, Precision::kBf16})
    for (const ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder})
      for (const bool training : {true, false}) {
        TrainConfig c = tiny(kind);
        c.model.precision = precision;
        const MemoryEstimate e = estimate_memory(c, training);
        const double real = measured_bytes(c, training);
        EXPECT_NEAR(e.total() / real, 1.0, 0.03)
            << precision_name(precision) << " " << model_kind_name(kind)
            << (training ? " training" : " evaluation") << ": estimate " << e.total()
            << " B (parameters " << e.parameters << ", gradients " << e.gradients << ", optimizer "
            << e.optimizer << ", activations " << e.activations << "), real " << real << " B";
        EXPECT_EQ(e.gradients > 0, training);
      }
}

TEST_F(MemoryEstimateTest, ParametersMatchTheTensorTableExactly) {
  for (const char* router : {"expert_choice", "top2", "hash", "expert_threshold"}) {
    TrainConfig c = tiny(ModelKind::kEncoder);
    c.model.moe.router = parse_router_kind(router);
    c.model.moe_every = 1;
    const Transformer model(c.model);
    const MemoryEstimate e = estimate_memory(c);
    EXPECT_EQ(e.gradients, 4.0 * double(model.table().total_floats())) << router;
    EXPECT_EQ(e.optimizer, 2 * e.gradients) << router;
    EXPECT_EQ(e.parameters,
              4.0 * double(model.table().total_floats() + model.state_table().total_floats()))
        << router;
  }
}

// Runs check_memory; returns its message ("" when it passes) and checks it took under a second.
std::string check(const TrainConfig& c, bool training = true) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  try {
    check_memory(c, training);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  return message;
}

TEST_F(MemoryEstimateTest, SizesThatCannotFitNameTheKey) {
  EXPECT_EQ(check(tiny(ModelKind::kEncoder)), "");
  struct Case {
    const char* expected;
    void (*set)(TrainConfig&);
  };
  const Case cases[] = {
      {"model.seq_len=1000000000 needs ", [](TrainConfig& c) { c.model.seq_len = 1000000000; }},
      {"batch_size=2147483647 needs ", [](TrainConfig& c) { c.batch_size = INT_MAX; }},
      {"model.d_model=1048576 needs ", [](TrainConfig& c) { c.model.d_model = 1 << 20; }},
      {"model.moe.n_experts=10000000 needs ",
       [](TrainConfig& c) { c.model.moe.n_experts = 10000000; }},
      {"model.n_layers=1000000 needs ", [](TrainConfig& c) { c.model.n_layers = 1000000; }},
      {"eval.batch_size=2000000000 needs ", [](TrainConfig& c) { c.eval.batch_size = 2000000000; }},
  };
  for (const Case& k : cases) {
    TrainConfig c = tiny(ModelKind::kEncoder);
    k.set(c);
    const std::string message = check(c);
    EXPECT_EQ(message.find(k.expected), 0u) << message;
    EXPECT_NE(message.find(" available; lower it"), std::string::npos) << message;
  }
  // Every size at its largest: the products overflow any integer, the estimate does not.
  TrainConfig huge = tiny(ModelKind::kDecoder);
  huge.model.vocab_size = huge.model.seq_len = huge.model.d_model = huge.model.d_ff = INT_MAX;
  huge.model.n_layers = huge.model.n_heads = huge.model.moe.n_experts = INT_MAX;
  huge.batch_size = huge.eval.batch_size = INT_MAX;
  const MemoryEstimate e = estimate_memory(huge);
  EXPECT_TRUE(std::isfinite(e.total()) && e.total() > 1e30) << e.total();
  EXPECT_NE(check(huge).find(" needs "), std::string::npos);
  // Evaluation needs no gradients or optimizer state.
  const TrainConfig c = tiny(ModelKind::kEncoder);
  const MemoryEstimate train_e = estimate_memory(c), eval_e = estimate_memory(c, false);
  EXPECT_EQ(eval_e.gradients + eval_e.optimizer, 0.0);
  EXPECT_LT(eval_e.total(), train_e.total());
}

// On a GPU the estimate adds the backend's scratch: in bf16 at least the bf16 copy of the
// attention probabilities [B, H, T, T], the logits' bf16 gradient [M, V] and each layer's two
// bf16 projection inputs [B·T, d]; the rest is the same.
TEST_F(MemoryEstimateTest, OnADeviceTheGpuScratchIsAdded) {
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    TrainConfig c = tiny(ModelKind::kDecoder);
    c.model.precision = precision;
    const MemoryEstimate host = estimate_memory(c), device = estimate_memory(c, true, true);
    EXPECT_EQ(host.device_scratch, 0.0);
    EXPECT_EQ(device.activations, host.activations);
    EXPECT_EQ(device.parameters + device.gradients + device.optimizer,
              host.parameters + host.gradients + host.optimizer);
    const double B = c.batch_size, T = c.model.seq_len, H = c.model.n_heads;
    double least = 64e6;
    if (precision == Precision::kBf16)
      least += 2 * B * H * T * T + 2 * B * T * double(c.model.vocab_size) +
               c.model.n_layers * 2 * (2 * B * T * c.model.d_model);
    EXPECT_GE(device.device_scratch, least);
    EXPECT_EQ(device.total(), host.total() + device.device_scratch);
  }
}

// Each MoE layer's routing scratch on a GPU: capped expert choice's solver and sort hold tens of
// bytes a (token, expert) pair, expert choice the transposed scores, token choice nothing of
// that size; doubling the experts grows the capped router's.
TEST_F(MemoryEstimateTest, OnADeviceTheRoutersScratchIsCounted) {
  auto scratch = [&](RouterKind router, int experts) {
    TrainConfig c = tiny(ModelKind::kEncoder);
    c.model.moe.router = router;
    c.model.moe.n_experts = experts;
    return estimate_memory(c, true, true).device_scratch;
  };
  const double pairs_per_layer =
      double(tiny(ModelKind::kEncoder).batch_size) * tiny(ModelKind::kEncoder).model.seq_len * 4;
  EXPECT_GT(scratch(RouterKind::kExpertChoice, 4), scratch(RouterKind::kTop2, 4));
  EXPECT_GT(scratch(RouterKind::kExpertChoiceCapped, 4) - scratch(RouterKind::kExpertChoice, 4),
            40 * pairs_per_layer);
  EXPECT_GT(scratch(RouterKind::kExpertChoiceCapped, 8),
            scratch(RouterKind::kExpertChoiceCapped, 4));
}

TEST_F(MemoryEstimateTest, MoeLayerAlone) {
  MoeConfig c;
  c.d_model = 1000000;
  EXPECT_THROW(check_moe_layer_memory(c, 4096, "bench layer"), Error);
  c.d_model = 256;
  EXPECT_NO_THROW(check_moe_layer_memory(c, 4096, "bench layer"));
  const MemoryEstimate e = estimate_moe_layer_memory(c, 4096);
  EXPECT_EQ(e.parameters, 4.0 * (2 * 8 * 256 * 1024 + 256 * 8));
}

// One MoE layer's own buffers after a training forward and backward, against
// estimate_moe_layer_memory (less the benchmark's x, dy, y, dx and token ids), in fp32 and in
// bf16: at this shape the bf16 layer holds more (bf16 copies of w1 and w2, 4·e·d·d_ff bytes,
// and bf16 gradients) than its fp32 activations saved, which an estimate blind to precision misses.
TEST_F(MemoryEstimateTest, MoeLayerBuffersInEitherPrecision) {
  if (!kHeapCountersVisible) GTEST_SKIP() << "mallinfo2 does not see AddressSanitizer's allocator";
  for (const Precision precision : {Precision::kFp32, Precision::kBf16}) {
    MoeConfig c = default_moe_config(RouterKind::kExpertChoice);
    c.d_model = 64;
    c.d_ff = 256;
    c.n_experts = 8;
    c.precision = precision;
    const int n = 64, d = c.d_model;
    TensorTable table;
    declare_moe_params(table, "", c);
    FlatBuffer params(table), grads(table);
    init_moe_params(params, "", c, 1, 0.5f);
    const Rng rng(3, 4);
    std::vector<float> x(size_t(n) * d), dy(x.size()), y(x.size()), dx(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = rng.normal(i), dy[i] = rng.normal(i + x.size());
    std::vector<int32_t> ids(size_t(n), 7);
    const MoeWeights w = moe_weights(params, "", c);
    MoeGrads g = moe_grads(grads, "", c);
    const auto step = [&](MoeLayer& layer) {
      layer.forward(w, MoeInput{x.data(), ids.data(), n, true, 0}, y.data());
      layer.backward(w, g, dy.data(), dx.data());
    };
    {  // once before measuring: one-time library setup (oneDNN's bf16 kernels) is nobody's layer
      MoeLayer warm(c);
      step(warm);
    }
    const double before = heap_in_use();
    MoeLayer layer(c);
    step(layer);
    const double real = heap_in_use() - before;
    const double estimate = estimate_moe_layer_memory(c, n).activations - 4.0 * n * d * 4 - n * 4;
    EXPECT_NEAR(estimate / real, 1.0, 0.05)
        << precision_name(precision) << ": estimate " << estimate << " B, real " << real << " B";
  }
}

TEST(FormatBytes, Compact) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1.5e9), "1.5 GB");
  EXPECT_EQ(format_bytes(22.7e9), "23 GB");
  EXPECT_EQ(format_bytes(999.9), "1.0 kB");
  EXPECT_EQ(format_bytes(3e21), "3e+21 B");
}

}  // namespace
