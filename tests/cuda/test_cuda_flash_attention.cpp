// The fused flash attention (cuda/flash_attention.h, bf16 mode) against the CPU op
// nn::attention_forward/backward in bf16 and in fp32, and against the cuBLAS path
// (cuda/attention.h) in bf16, on the same random inputs: encoder and decoder, with and without
// key padding, seq_len 1 to 512 (one tile, a partial tile, several, one query or key past a
// tile), head_dim 16, 64 and 128, several sequences and heads; the other head_dims once each.
// Tolerances. Flash rounds P to bf16 before its normalisation and takes the softmax backward's row
// term as rowsum(dO ⊙ O); the CPU rounds the normalised P and sums P ⊙ dP. So each term of a sum
// may differ by one bf16 step (2^-8 relative) between the two, where the cuBLAS path and the CPU
// differ by float rounding only (test_cuda_nn_ops: one bf16 step). An emulation of both
// arithmetics in numpy (one head, these shapes, inputs of spread 1 and 3) measured the worst
// differences (close()'s measure, relative to |cpu| + rms) at 3.5 bf16 steps for the output and
// 13 for dqkv (5.5 at spread 1), and flash's error against exact values within 1.6 times the CPU
// bf16 op's own. So:
// - the output within 8 bf16 steps and dqkv within 16 of the CPU's bf16 op, the same against the
//   cuBLAS path;
// - against the fp32 CPU op (the exact values), flash is about as accurate as the CPU's own bf16
//   op: its worst error at most twice the bf16 CPU op's, plus one bf16 step;
// - keys past a sequence's valid length get exactly 0 gradient, the forward and the backward
//   repeat bitwise, and the backward adds (+=) onto dqkv;
// - lse is the rows' logsumexp of the bf16-rounded scores (within float rounding).
// Each case prints its measured errors (a first GPU run calibrates the tolerances). Without a GPU
// every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/precision.h"
#include "cuda/attention.h"
#include "cuda/flash_attention.h"
#include "cuda/nn_backend.h"
#include "cuda_test_util.h"
#include "nn/attention.h"
#include "nn/backend.h"
#include "nn/linear.h"

namespace ecmoe::cuda::testing {
namespace {

constexpr double kBf16Step = 1.0 / 256;
constexpr double kOutTol = 8 * kBf16Step;
constexpr double kGradTol = 16 * kBf16Step;

struct Shape {
  int batch, seq_len, heads, head_dim;
  bool causal, padded;
  float spread = 1.f;  // the inputs' standard deviation (scores ~ spread²)
};

std::string describe(const Shape& s) {
  return "batch " + std::to_string(s.batch) + ", seq " + std::to_string(s.seq_len) + ", heads " +
         std::to_string(s.heads) + ", head_dim " + std::to_string(s.head_dim) +
         (s.causal ? ", causal" : ", encoder") + (s.padded ? ", padded" : "") +
         (s.spread != 1.f ? ", spread " + std::to_string(s.spread) : "");
}

nn::AttentionConfig config_of(const Shape& s, Precision precision) {
  return {s.batch, s.seq_len, s.heads, s.head_dim, s.causal, precision};
}

// Full, about half, and 1: a tile boundary inside the sequence, and a single visible key.
std::vector<int> valid_lengths(const Shape& s) {
  std::vector<int> v(s.batch);
  for (int b = 0; b < s.batch; ++b)
    v[b] = b % 3 == 0 ? s.seq_len : b % 3 == 1 ? std::max(1, s.seq_len / 2 + 1 - b) : 1;
  return v;
}

struct Inputs {
  std::vector<float> qkv, dout;
  std::vector<int> valid;
  const int* valid_or_null() const { return valid.empty() ? nullptr : valid.data(); }
};

Inputs inputs_of(const Shape& s, uint64_t seed) {
  const int d = s.heads * s.head_dim;
  Inputs in;
  in.qkv = random_normal(size_t(s.batch) * s.seq_len * 3 * d, seed, s.spread);
  in.dout = random_normal(size_t(s.batch) * s.seq_len * d, seed + 1);
  if (s.padded) in.valid = valid_lengths(s);
  return in;
}

struct Result {
  std::vector<float> out, dqkv;  // dqkv accumulated from zeros
};

Result cpu_attention(const Shape& s, Precision precision, const Inputs& in) {
  const nn::AttentionConfig cfg = config_of(s, precision);
  Result r;
  r.out.resize(in.dout.size());
  r.dqkv.assign(in.qkv.size(), 0.f);
  std::vector<float> probs(size_t(s.batch) * s.heads * s.seq_len * s.seq_len);
  nn::attention_forward(r.out.data(), probs.data(), in.qkv.data(), cfg, in.valid_or_null());
  nn::attention_backward(r.dqkv.data(), in.dout.data(), in.qkv.data(), probs.data(), cfg,
                         in.valid_or_null());
  return r;
}

// The inputs on the device, and the valid lengths (or nullptr).
struct DeviceInputs {
  DeviceVec<float> qkv, dout;
  DeviceVec<int> valid;
  bool padded;
  explicit DeviceInputs(const Inputs& in)
      : qkv(to_device(in.qkv)), dout(to_device(in.dout)), padded(!in.valid.empty()) {
    if (padded) valid = to_device(in.valid);
  }
  const int* valid_or_null() const { return padded ? valid.data() : nullptr; }
};

struct FlashRun {
  std::vector<float> out, lse, dqkv;
};

// Forward, then backward onto dqkv0 (zeros when empty), adding or overwriting.
FlashRun flash_attention(const Shape& s, const DeviceInputs& in, FlashAttentionScratch& scratch,
                         const std::vector<float>& dqkv0 = {},
                         nn::GradWrite write = nn::GradWrite::kAdd) {
  const nn::AttentionConfig cfg = config_of(s, Precision::kBf16);
  DeviceVec<float> out(in.dout.size()), saved(size_t(flash_attention_saved_floats(cfg)));
  DeviceVec<float> dqkv = to_device(dqkv0.empty() ? std::vector<float>(in.qkv.size(), 0.f) : dqkv0);
  flash_attention_forward(out.data(), saved.data(), in.qkv.data(), cfg, in.valid_or_null(),
                          context());
  flash_attention_backward(dqkv.data(), in.dout.data(), out.data(), saved.data(), cfg,
                           in.valid_or_null(), write, scratch, context());
  std::vector<float> lse = to_host(saved);  // saved begins with lse [B, H, T]
  lse.resize(size_t(s.batch) * s.heads * s.seq_len);
  return {to_host(out), std::move(lse), to_host(dqkv)};
}

Result cublas_attention(const Shape& s, const DeviceInputs& in) {
  const nn::AttentionConfig cfg = config_of(s, Precision::kBf16);
  DeviceVec<float> out(in.dout.size()), probs(size_t(s.batch) * s.heads * s.seq_len * s.seq_len);
  DeviceVec<float> dqkv = to_device(std::vector<float>(in.qkv.size(), 0.f));
  AttentionScratch scratch;
  cuda::attention_forward(out.data(), probs.data(), in.qkv.data(), cfg, in.valid_or_null(), scratch,
                          context());
  cuda::attention_backward(dqkv.data(), in.dout.data(), in.qkv.data(), probs.data(), cfg,
                           in.valid_or_null(), scratch, context());
  return {to_host(out), to_host(dqkv)};
}

// close()'s measure: the worst |got − ref| / (|ref| + rms(ref)); infinite for a NaN.
double worst_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double sq = 0;
  for (float c : ref) sq += double(c) * c;
  const double rms = ref.empty() ? 0 : std::sqrt(sq / double(ref.size()));
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(double(got[i]) - ref[i]) / (std::abs(double(ref[i])) + rms + 1e-30);
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
  }
  return worst;
}

// Keys at or past their sequence's valid length: dK and dV exactly 0 (no query sees them).
void expect_padded_keys_have_no_gradient(const Shape& s, const Inputs& in,
                                         const std::vector<float>& dqkv) {
  if (in.valid.empty()) return;
  const int d = s.heads * s.head_dim;
  for (int b = 0; b < s.batch; ++b)
    for (int t = in.valid[b]; t < s.seq_len; ++t)
      for (int c = d; c < 3 * d; ++c) {
        const float g = dqkv[(size_t(b) * s.seq_len + t) * 3 * d + c];
        ASSERT_EQ(g, 0.f) << "sequence " << b << ", key " << t << ", column " << c;
      }
}

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  const int batch_heads[4][2] = {{2, 3}, {3, 2}, {1, 4}, {4, 1}};
  int i = 0;
  for (int T : {1, 15, 64, 100, 130, 512})
    for (int hd : {16, 64, 128})
      for (const bool causal : {false, true})
        for (const bool padded : {false, true}) {
          const int* bh = batch_heads[i++ % 4];
          const int batch = T == 512 ? std::min(bh[0], 2) : bh[0];
          const int heads = T == 512 ? std::min(bh[1], 3) : bh[1];
          out.push_back({batch, T, heads, hd, causal, padded});
        }
  // Sharp softmaxes: the running maximum moves by a lot between key tiles.
  for (const bool causal : {false, true}) out.push_back({3, 130, 2, 64, causal, true, 3.f});
  // Every other head_dim the kernels are instantiated for (multiples of 16 up to 128), once each.
  for (const int hd : {32, 48, 80, 96, 112}) out.push_back({2, 100, 2, hd, hd % 32 == 0, true});
  return out;
}

TEST(CudaFlashAttention, MatchesTheCpuAndTheCublasPathInBf16) {
  ECMOE_REQUIRE_GPU();
  FlashAttentionScratch scratch;
  uint64_t seed = 100;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const Inputs in = inputs_of(s, seed += 2);
    const Result cpu16 = cpu_attention(s, Precision::kBf16, in);
    const Result cpu32 = cpu_attention(s, Precision::kFp32, in);
    const DeviceInputs gin(in);
    const FlashRun flash = flash_attention(s, gin, scratch);
    const Result cublas = cublas_attention(s, gin);
    const double out_cpu = worst_error(flash.out, cpu16.out),
                 grad_cpu = worst_error(flash.dqkv, cpu16.dqkv),
                 out_cublas = worst_error(flash.out, cublas.out),
                 grad_cublas = worst_error(flash.dqkv, cublas.dqkv),
                 out_exact = worst_error(flash.out, cpu32.out),
                 grad_exact = worst_error(flash.dqkv, cpu32.dqkv),
                 out_cpu_exact = worst_error(cpu16.out, cpu32.out),
                 grad_cpu_exact = worst_error(cpu16.dqkv, cpu32.dqkv);
    std::printf(
        "flash %-60s out: vs cpu16 %.2e, cublas %.2e, fp32 %.2e (cpu16 %.2e); dqkv: vs cpu16 "
        "%.2e, cublas %.2e, fp32 %.2e (cpu16 %.2e)\n",
        describe(s).c_str(), out_cpu, out_cublas, out_exact, out_cpu_exact, grad_cpu, grad_cublas,
        grad_exact, grad_cpu_exact);
    EXPECT_TRUE(close(flash.out, cpu16.out, kOutTol));
    EXPECT_TRUE(close(flash.dqkv, cpu16.dqkv, kGradTol));
    EXPECT_TRUE(close(flash.out, cublas.out, kOutTol));
    EXPECT_TRUE(close(flash.dqkv, cublas.dqkv, kGradTol));
    EXPECT_LE(out_exact, 2 * out_cpu_exact + kBf16Step);
    EXPECT_LE(grad_exact, 2 * grad_cpu_exact + kBf16Step);
    expect_padded_keys_have_no_gradient(s, in, flash.dqkv);
    // Overwriting a buffer of NaNs: the bits of adding into zeros, every element written (the
    // keys no query sees included), zeros' signs too.
    const std::vector<float> nans(in.qkv.size(), std::numeric_limits<float>::quiet_NaN());
    const FlashRun stored = flash_attention(s, gin, scratch, nans, nn::GradWrite::kOverwrite);
    EXPECT_TRUE(same_bits(stored.dqkv, flash.dqkv));
  }
}

// lse [B, H, T] against the logsumexp of the scaled scores of the bf16-rounded q and k over each
// row's visible keys, in double.
TEST(CudaFlashAttention, SavesTheRowsLogsumexp) {
  ECMOE_REQUIRE_GPU();
  FlashAttentionScratch scratch;
  for (const Shape& s : {Shape{2, 100, 3, 64, true, true}, Shape{3, 130, 2, 16, false, true},
                         Shape{1, 64, 2, 128, false, false}, Shape{2, 1, 1, 32, true, false}}) {
    SCOPED_TRACE(describe(s));
    const Inputs in = inputs_of(s, 7);
    const DeviceInputs gin(in);
    const FlashRun flash = flash_attention(s, gin, scratch);
    const int T = s.seq_len, hd = s.head_dim, d = s.heads * hd;
    const double scale = double(1.f / std::sqrt(float(hd)));
    for (int b = 0; b < s.batch; ++b)
      for (int h = 0; h < s.heads; ++h)
        for (int t = 0; t < T; ++t) {
          const int kv_len = in.valid.empty() ? T : in.valid[b];
          const int n = s.causal ? std::min(t + 1, kv_len) : kv_len;
          std::vector<double> scores(n);
          for (int j = 0; j < n; ++j) {
            double acc = 0;
            for (int c = 0; c < hd; ++c)
              acc += double(round_to_bf16(in.qkv[(size_t(b) * T + t) * 3 * d + h * hd + c])) *
                     round_to_bf16(in.qkv[(size_t(b) * T + j) * 3 * d + d + h * hd + c]);
            scores[j] = float(scale) * float(acc);
          }
          const double m = *std::max_element(scores.begin(), scores.end());
          double sum = 0;
          for (double x : scores) sum += std::exp(x - m);
          const double want = m + std::log(sum);
          const float got = flash.lse[(size_t(b) * s.heads + h) * T + t];
          ASSERT_NEAR(got, want, 1e-4 * (1 + std::abs(want)))
              << "sequence " << b << ", head " << h << ", row " << t;
        }
  }
}

TEST(CudaFlashAttention, RepeatsBitwiseAndAccumulates) {
  ECMOE_REQUIRE_GPU();
  FlashAttentionScratch scratch;
  for (const Shape& s : {Shape{3, 130, 2, 64, true, true}, Shape{2, 100, 3, 128, false, true},
                         Shape{4, 15, 1, 16, true, false}}) {
    SCOPED_TRACE(describe(s));
    const Inputs in = inputs_of(s, 11);
    const DeviceInputs gin(in);
    const FlashRun first = flash_attention(s, gin, scratch);
    const FlashRun again = flash_attention(s, gin, scratch);
    EXPECT_TRUE(same_bits(again.out, first.out));
    EXPECT_TRUE(same_bits(again.lse, first.lse));
    EXPECT_TRUE(same_bits(again.dqkv, first.dqkv));
    // Onto a non-zero gradient: dqkv0 + the gradient (each element added once, by one owner).
    const std::vector<float> dqkv0 = random_normal(in.qkv.size(), 12);
    const FlashRun onto = flash_attention(s, gin, scratch, dqkv0);
    for (size_t i = 0; i < dqkv0.size(); ++i) {
      const float want = dqkv0[i] + first.dqkv[i];
      ASSERT_NEAR(onto.dqkv[i], want, 1e-6 * (std::abs(dqkv0[i]) + std::abs(first.dqkv[i])))
          << "at " << i;
      if (first.dqkv[i] == 0.f) {
        ASSERT_EQ(onto.dqkv[i], dqkv0[i]) << "at " << i;
      }
    }
  }
}

// The backend takes the flash path in bf16 when the head dim allows it (saving [B, H, T]), the
// cuBLAS path otherwise or when told so (saving the probabilities), with the same results as the
// direct calls.
TEST(CudaFlashAttention, BackendChoosesTheFlashPathInBf16) {
  ECMOE_REQUIRE_GPU();
  const Shape s{2, 100, 3, 64, true, true};
  const nn::AttentionConfig bf16 = config_of(s, Precision::kBf16);
  const int64_t rows = int64_t(s.batch) * s.heads * s.seq_len, square = rows * s.seq_len;
  const std::unique_ptr<nn::Backend> flash = make_nn_backend();
  const std::unique_ptr<nn::Backend> cublas = make_nn_backend({.flash_attention = false});
  // lse [B, H, T], then the bf16 qkv [B, T, 3·d] at a 16-byte boundary.
  const int64_t qkv = int64_t(s.batch) * s.seq_len * 3 * s.heads * s.head_dim;
  EXPECT_EQ(flash->attention_saved_floats(bf16), rows + qkv / 2);
  EXPECT_EQ(flash_attention_saved_floats(config_of({1, 3, 1, 16, false, false}, Precision::kBf16)),
            4 + 3 * 3 * 16 / 2);  // lse's 3 floats padded to 4
  EXPECT_EQ(flash->attention_saved_floats(config_of(s, Precision::kFp32)), square);
  EXPECT_EQ(flash->attention_saved_floats(config_of({2, 100, 3, 8, true, true}, Precision::kBf16)),
            int64_t(2) * 3 * 100 * 100);
  EXPECT_EQ(flash->attention_saved_floats(config_of({1, 10, 1, 144, true, true}, Precision::kBf16)),
            100);
  EXPECT_EQ(cublas->attention_saved_floats(bf16), square);

  const Inputs in = inputs_of(s, 21);
  const DeviceInputs gin(in);
  FlashAttentionScratch scratch;
  const FlashRun direct = flash_attention(s, gin, scratch);
  const Result direct_cublas = cublas_attention(s, gin);
  for (nn::Backend* be : {flash.get(), cublas.get()}) {
    DeviceVec<float> out(in.dout.size()), saved(size_t(be->attention_saved_floats(bf16)));
    DeviceVec<float> dqkv = to_device(std::vector<float>(in.qkv.size(), 0.f));
    be->attention_forward(out.data(), saved.data(), gin.qkv.data(), bf16, gin.valid_or_null());
    be->attention_backward(dqkv.data(), gin.dout.data(), gin.qkv.data(), out.data(), saved.data(),
                           bf16, gin.valid_or_null(), nn::GradWrite::kAdd);
    const bool is_flash = be == flash.get();
    EXPECT_TRUE(same_bits(to_host(out), is_flash ? direct.out : direct_cublas.out));
    EXPECT_TRUE(same_bits(to_host(dqkv), is_flash ? direct.dqkv : direct_cublas.dqkv));
    // Over a random buffer (GradWrite::kOverwrite): the same gradient.
    DeviceVec<float> over = to_device(random_normal(in.qkv.size(), 22));
    be->attention_backward(over.data(), gin.dout.data(), gin.qkv.data(), out.data(), saved.data(),
                           bf16, gin.valid_or_null(), nn::GradWrite::kOverwrite);
    EXPECT_TRUE(same_bits(to_host(over), is_flash ? direct.dqkv : direct_cublas.dqkv));
  }
}

// The attention sublayer's front as one backend op (nn::Backend::attention_front_forward):
// LayerNorm, the qkv projection, then the attention. On the flash path the LayerNorm writes only
// the bf16 copy the projection reads (and keeps for its backward), the projection's GEMM writes
// the bf16 qkv straight into the attention's saved state, and neither fp32 form exists
// (attention_ln_floats and attention_qkv_floats 0); elsewhere the three ops as they are. The
// same results as the three ops: the same bits on the emulation (a GPU may pick another GEMM
// kernel for a bf16 output, so there within the rounding of qkv to bf16), and the backward from
// either forward's state the same.
TEST(CudaFlashAttention, AttentionFrontIsTheLayerNormTheProjectionAndTheAttention) {
  ECMOE_REQUIRE_GPU();
  const std::unique_ptr<nn::Backend> flash = make_nn_backend();
  const std::unique_ptr<nn::Backend> cublas = make_nn_backend({.flash_attention = false});
  for (const Shape& s : {Shape{2, 100, 3, 64, true, true}, Shape{3, 70, 2, 16, false, false}}) {
    for (const Precision precision : {Precision::kBf16, Precision::kFp32}) {
      for (nn::Backend* be : {flash.get(), cublas.get()}) {
        const bool is_flash = be == flash.get() && precision == Precision::kBf16;
        SCOPED_TRACE(describe(s) + ", " + precision_name(precision) +
                     (is_flash ? ", flash" : ", cublas"));
        const nn::AttentionConfig cfg = config_of(s, precision);
        const int d = s.heads * s.head_dim, rows = s.batch * s.seq_len;
        const nn::LinearShape shape{rows, d, 3 * d};
        const int64_t full_ln = int64_t(rows) * d, full_qkv = int64_t(rows) * 3 * d;
        EXPECT_EQ(be->attention_ln_floats(cfg), is_flash ? 0 : full_ln);
        EXPECT_EQ(be->attention_qkv_floats(cfg), is_flash ? 0 : full_qkv);
        const Inputs in = inputs_of(s, 31);
        const DeviceInputs gin(in);
        std::vector<float> x = random_normal(size_t(full_ln), 32, 2.f);
        for (float& v : x) v += 1.f;
        const DeviceVec<float> gx = to_device(x), gain = to_device(random_normal(size_t(d), 35)),
                               bias = to_device(random_normal(size_t(d), 36)),
                               w = to_device(random_normal(size_t(d) * 3 * d, 33, 0.1f)),
                               b = to_device(random_normal(size_t(3) * d, 34));
        const size_t n_saved = size_t(be->attention_saved_floats(cfg)),
                     n_qkv_saved = size_t(be->linear_saved_floats(shape, precision));
        struct Run {
          std::vector<float> out, mean, rstd, saved, qkv_saved, dqkv;
        };
        const auto run = [&](bool fused) {
          const auto floats = [](int64_t n) { return DeviceVec<float>(static_cast<size_t>(n)); };
          DeviceVec<float> out = floats(full_ln), mean = floats(rows), rstd = floats(rows),
                           saved = floats(int64_t(n_saved)),
                           qkv_saved = floats(int64_t(n_qkv_saved)),
                           ln = floats(fused ? be->attention_ln_floats(cfg) : full_ln),
                           qkv = floats(fused ? be->attention_qkv_floats(cfg) : full_qkv),
                           dqkv = floats(full_qkv);
          if (fused) {
            const nn::AttentionFrontState state{ln.data(),  mean.data(),      rstd.data(),
                                                qkv.data(), qkv_saved.data(), saved.data()};
            be->attention_front_forward(out.data(), state, gx.data(),
                                        {gain.data(), bias.data(), w.data(), b.data()}, cfg,
                                        gin.valid_or_null());
          } else {
            be->layernorm_forward(ln.data(), mean.data(), rstd.data(), gx.data(), gain.data(),
                                  bias.data(), rows, d);
            be->linear_forward(qkv.data(), qkv_saved.data(), ln.data(), w.data(), b.data(), shape,
                               precision);
            be->attention_forward(out.data(), saved.data(), qkv.data(), cfg, gin.valid_or_null());
          }
          be->attention_backward(dqkv.data(), gin.dout.data(), qkv.data(), out.data(), saved.data(),
                                 cfg, gin.valid_or_null(), nn::GradWrite::kOverwrite);
          return Run{to_host(out),   to_host(mean),      to_host(rstd),
                     to_host(saved), to_host(qkv_saved), to_host(dqkv)};
        };
        const Run three = run(false), one = run(true);
        EXPECT_TRUE(same_bits(one.mean, three.mean));
        EXPECT_TRUE(same_bits(one.rstd, three.rstd));
        EXPECT_TRUE(same_bits(one.qkv_saved, three.qkv_saved));  // the LayerNorm's bf16 output
        if (!is_flash || kEmulated) {  // the three ops themselves, or the emulation
          EXPECT_TRUE(same_bits(one.out, three.out));
          EXPECT_TRUE(same_bits(one.saved, three.saved));
          EXPECT_TRUE(same_bits(one.dqkv, three.dqkv));
        } else {
          EXPECT_LE(worst_error(one.out, three.out), 2 * kBf16Step);
          EXPECT_LE(worst_error(one.dqkv, three.dqkv), 2 * kBf16Step);
        }
      }
    }
  }
}

}  // namespace
}  // namespace ecmoe::cuda::testing
