// The dense model's ops on the GPU (cuda/nn_ops.h, loss.h, linear.h, optimizer.h, attention.h)
// against the CPU op of the same name on the same random inputs, at awkward sizes (rows 1, 3, 77,
// dims that are no multiple of 32, vocabularies that are no power of two):
// - bitwise where both sides do the same arithmetic in the same order: the embeddings (both
//   tables' gradients), residual and bias broadcasts, the row gather and scatter, bias column
//   sums over at most kRowChunk rows, AdamW (one shared update function) and the gradient norm
//   and clipping (the CPU's summation order), also with the clipping factor applied inside
//   AdamW as the training path does;
// - within 1e-5 relative in fp32 where the order or the math library differs (LayerNorm's fused
//   multiply-adds may be placed differently by the two compilers; CUDA's expf/logf are not
//   libmvec's; cuBLAS sums in another order);
// - in bf16 mode within 1e-4: both sides multiply the same bf16-rounded operands exactly and
//   differ only in the fp32 accumulation order (and the attention's probabilities, rounded to
//   bf16 after an fp32-level difference, within one bf16 step).
// Every op that sums across elements also runs twice on the GPU: the results must be the same
// bits. Without a GPU every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/tensor_table.h"
#include "cuda/attention.h"
#include "cuda/context.h"
#include "cuda/expert_gemm.h"
#include "cuda/gemm_bias.h"
#include "cuda/linear.h"
#include "cuda/loss.h"
#include "cuda/moe_ops.h"
#include "cuda/nn_backend.h"
#include "cuda/nn_ops.h"
#include "cuda/optimizer.h"
#include "cuda/optimizer_device.h"
#include "cuda_test_util.h"
#include "nn/attention.h"
#include "nn/backend.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "nn/residual.h"
#include "nn/tied_output.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"

using namespace ecmoe;
using namespace ecmoe::cuda;
using namespace ecmoe::cuda::testing;

namespace {

constexpr double kFp32 = 1e-5;
constexpr double kBf16Accumulation = 1e-4;
constexpr double kBf16Step = 1.0 / 256;  // one bf16 rounding step, relative

std::string shape_name(int rows, int cols) {
  return "rows " + std::to_string(rows) + ", cols " + std::to_string(cols);
}

TEST(CudaNnOps, LayerNormMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (int rows : {1, 3, 77, 200}) {
    for (int dim : {1, 5, 33, 100, 768}) {
      SCOPED_TRACE(shape_name(rows, dim));
      const size_t n = size_t(rows) * dim;
      std::vector<float> x = random_normal(n, 1, 2.f);
      for (float& v : x) v += 3.f;  // a mean far from 0 against the spread
      const std::vector<float> gain = random_normal(dim, 2), bias = random_normal(dim, 3),
                               dout = random_normal(n, 4), dinp0 = random_normal(n, 5),
                               dgain0 = random_normal(dim, 6), dbias0 = random_normal(dim, 7);
      std::vector<float> out(n), mean(rows), rstd(rows), dinp = dinp0, dgain = dgain0,
                                                         dbias = dbias0;
      nn::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(),
                            bias.data(), rows, dim);
      nn::layernorm_backward(dinp.data(), dgain.data(), dbias.data(), dout.data(), x.data(),
                             gain.data(), mean.data(), rstd.data(), rows, dim);

      DeviceVec<float> gx = to_device(x), ggain = to_device(gain), gbias = to_device(bias),
                       gdout = to_device(dout), gout(n), gmean(rows), grstd(rows);
      cuda::layernorm_forward(gout.data(), gmean.data(), grstd.data(), gx.data(), ggain.data(),
                              gbias.data(), rows, dim, stream());
      EXPECT_TRUE(close(to_host(gout), out, kFp32));
      EXPECT_TRUE(close(to_host(gmean), mean, kFp32));
      EXPECT_TRUE(close(to_host(grstd), rstd, kFp32));
      // In bf16 only: the fp32 output rounded, and the same statistics, bitwise.
      DeviceVec<uint16_t> gout16(n), want16(n);
      DeviceVec<float> gmean16(rows), grstd16(rows);
      cuda::layernorm_forward(gout16.data(), gmean16.data(), grstd16.data(), gx.data(),
                              ggain.data(), gbias.data(), rows, dim, stream());
      to_bf16(want16.data(), gout.data(), int64_t(n), stream());
      EXPECT_EQ(to_host(gout16), to_host(want16));
      EXPECT_TRUE(same_bits(to_host(gmean16), to_host(gmean)));
      EXPECT_TRUE(same_bits(to_host(grstd16), to_host(grstd)));
      // The backward from the CPU's saved statistics, twice: the same bits each time.
      DeviceVec<float> cmean = to_device(mean), crstd = to_device(rstd);
      ColumnSumScratch scratch;
      std::vector<float> first[3];
      for (int run = 0; run < 2; ++run) {
        DeviceVec<float> gdinp = to_device(dinp0), gdgain = to_device(dgain0),
                         gdbias = to_device(dbias0);
        cuda::layernorm_backward(gdinp.data(), gdgain.data(), gdbias.data(), gdout.data(),
                                 gx.data(), ggain.data(), cmean.data(), crstd.data(), rows, dim,
                                 scratch, stream());
        const std::vector<float> got[3] = {to_host(gdinp), to_host(gdgain), to_host(gdbias)};
        if (run == 0) {
          EXPECT_TRUE(close(got[0], dinp, kFp32));
          EXPECT_TRUE(close(got[1], dgain, kFp32));
          EXPECT_TRUE(close(got[2], dbias, kFp32));
          if (rows <= kRowChunk) {  // one chunk: the CPU's additions
            EXPECT_TRUE(same_bits(got[2], dbias));
          }
          for (int i = 0; i < 3; ++i) first[i] = got[i];
        } else {
          for (int i = 0; i < 3; ++i) EXPECT_TRUE(same_bits(got[i], first[i]));
        }
      }
    }
  }
}

// Token ids drawn from `hot` ids most of the time (each id's gradient then sums many rows), the
// rest spread over the vocabulary.
std::vector<int> skewed_tokens(int n, int vocab, int hot, uint64_t seed) {
  const Rng rng(seed, 9);
  std::vector<int> ids(n);
  for (int i = 0; i < n; ++i)
    ids[i] = int(rng.below(uint64_t(i), 3) == 0 ? rng.below(uint64_t(n + i), uint64_t(vocab))
                                                : rng.below(uint64_t(2 * n + i), uint64_t(hot)));
  return ids;
}

TEST(CudaNnOps, EmbeddingMatchesTheCpuBitwise) {
  ECMOE_REQUIRE_GPU();
  struct Shape {
    int batch, seq_len, dim, vocab;
  };
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{1, 3, 33, 7}, Shape{3, 7, 33, 50},
                         Shape{4, 77, 300, 1001}, Shape{8, 128, 100, 30011}}) {
    for (bool with_pos : {true, false}) {
      SCOPED_TRACE("batch " + std::to_string(s.batch) + ", seq " + std::to_string(s.seq_len) +
                   ", dim " + std::to_string(s.dim) + ", vocab " + std::to_string(s.vocab) +
                   (with_pos ? ", positions" : ""));
      const nn::EmbeddingConfig cfg{s.batch, s.seq_len, s.dim, s.vocab};
      const int rows = s.batch * s.seq_len, max_len = s.seq_len + 3;
      const std::vector<int> tokens = skewed_tokens(rows, s.vocab, std::min(s.vocab, 5), 11);
      const std::vector<float> table = random_normal(size_t(s.vocab) * s.dim, 12),
                               pos = random_normal(size_t(max_len) * s.dim, 13),
                               dout = random_normal(size_t(rows) * s.dim, 14),
                               dtable0 = random_normal(size_t(s.vocab) * s.dim, 15),
                               dpos0 = random_normal(size_t(max_len) * s.dim, 16);
      std::vector<float> out(size_t(rows) * s.dim), dtable = dtable0, dpos = dpos0;
      nn::embedding_forward(out.data(), tokens.data(), table.data(),
                            with_pos ? pos.data() : nullptr, cfg);
      nn::embedding_backward(dtable.data(), with_pos ? dpos.data() : nullptr, dout.data(),
                             tokens.data(), cfg);

      DeviceVec<int> gtokens = to_device(tokens);
      DeviceVec<float> gtable = to_device(table), gpos = to_device(pos), gdout = to_device(dout),
                       gout(size_t(rows) * s.dim);
      cuda::embedding_forward(gout.data(), gtokens.data(), gtable.data(),
                              with_pos ? gpos.data() : nullptr, cfg, stream());
      EXPECT_TRUE(same_bits(to_host(gout), out));
      EmbeddingScratch scratch;
      for (int run = 0; run < 2; ++run) {  // the same bits every run
        DeviceVec<float> gdtable = to_device(dtable0), gdpos = to_device(dpos0);
        cuda::embedding_backward(gdtable.data(), with_pos ? gdpos.data() : nullptr, gdout.data(),
                                 gtokens.data(), cfg, scratch, stream());
        EXPECT_TRUE(same_bits(to_host(gdtable), dtable));
        EXPECT_TRUE(same_bits(to_host(gdpos), dpos));  // untouched without positions
      }
    }
  }
}

TEST(CudaNnOps, ResidualBiasAndRowOpsMatchTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (int64_t n : {int64_t(1), int64_t(33), int64_t(100003)}) {
    const std::vector<float> a = random_normal(n, 21), b = random_normal(n, 22),
                             dout = random_normal(n, 23);
    std::vector<float> out(n), da = a, db = b, acc = a;
    nn::residual_forward(out.data(), a.data(), b.data(), n);
    nn::residual_backward(da.data(), db.data(), dout.data(), n);
    nn::add_inplace(acc.data(), b.data(), n);
    DeviceVec<float> ga = to_device(a), gb = to_device(b), gdout = to_device(dout), gout(n),
                     gda = to_device(a), gdb = to_device(b), gacc = to_device(a);
    cuda::residual_forward(gout.data(), ga.data(), gb.data(), n, stream());
    cuda::residual_backward(gda.data(), gdb.data(), gdout.data(), n, stream());
    cuda::add_inplace(gacc.data(), gb.data(), n, stream());
    EXPECT_TRUE(same_bits(to_host(gout), out));
    EXPECT_TRUE(same_bits(to_host(gda), da));
    EXPECT_TRUE(same_bits(to_host(gdb), db));
    EXPECT_TRUE(same_bits(to_host(gacc), acc));
  }
  for (int rows : {1, 3, 64, 65, 77, 1000}) {
    for (int cols : {1, 33, 300}) {
      SCOPED_TRACE(shape_name(rows, cols));
      const std::vector<float> dout = random_normal(size_t(rows) * cols, 24),
                               bias = random_normal(cols, 25), dbias0 = random_normal(cols, 26);
      std::vector<float> dbias = dbias0;
      nn::add_column_sums(dbias.data(), dout.data(), rows, cols);
      std::vector<float> broadcast(size_t(rows) * cols);
      for (int r = 0; r < rows; ++r)
        std::copy(bias.begin(), bias.end(), &broadcast[size_t(r) * cols]);
      DeviceVec<float> gdout = to_device(dout), gbias = to_device(bias),
                       gbroadcast(size_t(rows) * cols);
      cuda::broadcast_rows(gbroadcast.data(), gbias.data(), rows, cols, stream());
      EXPECT_TRUE(same_bits(to_host(gbroadcast), broadcast));
      ColumnSumScratch scratch;
      std::vector<float> first;
      for (int run = 0; run < 2; ++run) {
        DeviceVec<float> gdbias = to_device(dbias0);
        cuda::add_column_sums(gdbias.data(), gdout.data(), rows, cols, scratch, stream());
        const std::vector<float> got = to_host(gdbias);
        if (run == 0) {
          if (rows <= kRowChunk) {  // one chunk: the CPU's additions
            EXPECT_TRUE(same_bits(got, dbias));
          } else {
            EXPECT_TRUE(close(got, dbias, kFp32));
          }
          first = got;
        } else {
          EXPECT_TRUE(same_bits(got, first));
        }
      }
      // The loss head's gather of every other row and its adjoint.
      std::vector<int> index;
      for (int r = rows - 1; r >= 0; r -= 2) index.push_back(r);
      const int m = int(index.size());
      std::vector<float> src(size_t(m) * cols);
      for (int j = 0; j < m; ++j)
        for (int c = 0; c < cols; ++c) src[size_t(j) * cols + c] = bias[c] * float(j);
      // The added rows as stored (src), not a product the compiler may fuse with the addition.
      std::vector<float> gathered(size_t(m) * cols), scattered = dout;
      for (int j = 0; j < m; ++j)
        for (int c = 0; c < cols; ++c) {
          gathered[size_t(j) * cols + c] = dout[size_t(index[j]) * cols + c];
          scattered[size_t(index[j]) * cols + c] += src[size_t(j) * cols + c];
        }
      DeviceVec<int> gindex = to_device(index);
      DeviceVec<float> ggathered(size_t(m) * cols), gsrc = to_device(src),
                                                    gscattered = to_device(dout);
      cuda::gather_rows(ggathered.data(), gdout.data(), gindex.data(), m, cols, stream());
      cuda::scatter_add_rows(gscattered.data(), gsrc.data(), gindex.data(), m, cols, stream());
      EXPECT_TRUE(same_bits(to_host(ggathered), gathered));
      EXPECT_TRUE(same_bits(to_host(gscattered), scattered));
    }
  }
}

// Targets in [0, vocab), every `ignore_every`-th row ignored (0: none; 1: all).
std::vector<int> random_targets(int rows, int vocab, int ignore_every, uint64_t seed) {
  const Rng rng(seed, 5);
  std::vector<int> t(rows);
  for (int r = 0; r < rows; ++r)
    t[r] = ignore_every > 0 && r % ignore_every == 0 ? nn::kIgnoreIndex
                                                     : int(rng.below(uint64_t(r), uint64_t(vocab)));
  return t;
}

TEST(CudaNnOps, CrossEntropyMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (int rows : {1, 3, 77}) {
    for (int vocab : {1, 7, 1000, 8003}) {
      for (int ignore_every : {0, 3, 1}) {
        SCOPED_TRACE(shape_name(rows, vocab) + ", ignore every " + std::to_string(ignore_every));
        const std::vector<float> logits = random_normal(size_t(rows) * vocab, 31, 3.f);
        const std::vector<int> targets = random_targets(rows, vocab, ignore_every, 32);
        const int64_t count = nn::count_targets(targets.data(), rows, vocab);
        std::vector<float> lse(rows), dlogits(size_t(rows) * vocab);
        const nn::CrossEntropyResult cpu =
            nn::cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
        nn::cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), count,
                                   0.5f, rows, vocab);
        DeviceVec<float> glogits = to_device(logits), glse(rows), gd(size_t(rows) * vocab);
        DeviceVec<int> gtargets = to_device(targets);
        DeviceVec<double> gloss(3);
        double first_loss = 0;
        std::vector<float> first_lse;
        for (int run = 0; run < 2; ++run) {
          cuda::cross_entropy_forward(gloss.data(), glse.data(), glogits.data(), gtargets.data(),
                                      rows, vocab, stream());
          const std::vector<double> result = to_host(gloss);
          const double loss = result[0];
          const std::vector<float> got_lse = to_host(glse);
          if (run == 0) {
            EXPECT_EQ(cpu.count, count);
            EXPECT_EQ(result[1], double(count));
            EXPECT_EQ(result[2], double(rows));  // no bad target
            EXPECT_NEAR(loss, cpu.loss, kFp32 * (std::abs(cpu.loss) + 1e-3));
            EXPECT_TRUE(close(got_lse, lse, kFp32));
            first_loss = loss;
            first_lse = got_lse;
          } else {
            EXPECT_EQ(std::memcmp(&loss, &first_loss, sizeof loss), 0);
            EXPECT_TRUE(same_bits(got_lse, first_lse));
          }
        }
        // Backward from the CPU's logsumexp, into another buffer and in place.
        DeviceVec<float> clse = to_device(lse);
        cuda::cross_entropy_backward(gd.data(), glogits.data(), clse.data(), gtargets.data(), count,
                                     0.5f, rows, vocab, stream());
        const std::vector<float> got = to_host(gd);
        EXPECT_TRUE(close(got, dlogits, kFp32));
        cuda::cross_entropy_backward(glogits.data(), glogits.data(), clse.data(), gtargets.data(),
                                     count, 0.5f, rows, vocab, stream());
        EXPECT_TRUE(same_bits(to_host(glogits), got));
      }
    }
  }
}

// Through the backend: the loss and the count in one copy, there once wait_for_results() has
// returned; a target outside the vocabulary is the CPU's one-line error, naming the first such row,
// at that wait.
TEST(CudaNnOps, CrossEntropyThroughTheBackendCountsAndRefusesBadTargets) {
  ECMOE_REQUIRE_GPU();
  const std::unique_ptr<nn::Backend> be = make_nn_backend();
  const int rows = 2000, vocab = 50;
  const std::vector<float> logits = random_normal(size_t(rows) * vocab, 35);
  std::vector<int> targets = random_targets(rows, vocab, 3, 36);
  std::vector<float> lse(rows);
  const nn::CrossEntropyResult cpu =
      nn::cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
  DeviceVec<float> glogits = to_device(logits), glse(rows);
  DeviceVec<int> gtargets = to_device(targets);
  nn::CrossEntropyResult gpu{-1.0, -1};
  be->cross_entropy_forward(&gpu, glse.data(), glogits.data(), gtargets.data(), rows, vocab);
  be->wait_for_results();
  EXPECT_EQ(gpu.count, cpu.count);
  EXPECT_NEAR(gpu.loss, cpu.loss, kFp32 * cpu.loss);
  targets[1500] = vocab;  // two bad targets: the first is named
  targets[1700] = -2;
  gtargets = to_device(targets);
  std::string message;
  try {
    be->cross_entropy_forward(&gpu, glse.data(), glogits.data(), gtargets.data(), rows, vocab);
    be->wait_for_results();
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("target 50 at row 1500 is outside [0, 50)"), std::string::npos) << message;
}

struct GemmShape {
  int rows, in_dim, out_dim;
  nn::LinearShape linear() const { return {rows, in_dim, out_dim}; }
  size_t inputs() const { return size_t(rows) * in_dim; }
  size_t weights() const { return size_t(in_dim) * out_dim; }
  size_t outputs() const { return size_t(rows) * out_dim; }
  std::string name() const {
    return "rows " + std::to_string(rows) + ", in " + std::to_string(in_dim) + ", out " +
           std::to_string(out_dim);
  }
};
const GemmShape kGemmShapes[] = {{1, 33, 70}, {3, 1, 5}, {77, 100, 257}, {300, 768, 96}};

double gemm_tolerance(Precision precision) {
  return precision == Precision::kFp32 ? kFp32 : kBf16Accumulation;
}

TEST(CudaNnOps, LinearMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    for (const GemmShape& s : kGemmShapes) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(std::string(precision_name(precision)) + ", rows " + std::to_string(s.rows) +
                     ", in " + std::to_string(s.in_dim) + ", out " + std::to_string(s.out_dim) +
                     (with_bias ? ", bias" : ""));
        const nn::LinearShape shape{s.rows, s.in_dim, s.out_dim};
        const size_t nx = size_t(s.rows) * s.in_dim, nw = size_t(s.in_dim) * s.out_dim,
                     ny = size_t(s.rows) * s.out_dim;
        const std::vector<float> x = random_normal(nx, 41), w = random_normal(nw, 42, 0.1f),
                                 b = random_normal(s.out_dim, 43), dy = random_normal(ny, 44),
                                 dx0 = random_normal(nx, 45), dw0 = random_normal(nw, 46),
                                 db0 = random_normal(s.out_dim, 47);
        std::vector<float> y(ny), dx = dx0, dw = dw0, db = db0;
        nn::linear_forward(y.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, shape,
                           precision);
        nn::linear_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, dy.data(),
                            x.data(), w.data(), shape, precision);
        DeviceVec<float> gx = to_device(x), gw = to_device(w), gb = to_device(b),
                         gdy = to_device(dy), gy(ny), gdx = to_device(dx0), gdw = to_device(dw0),
                         gdb = to_device(db0);
        LinearScratch scratch;
        cuda::linear_forward(gy.data(), nullptr, gx.data(), gw.data(),
                             with_bias ? gb.data() : nullptr, shape, precision, scratch, context());
        cuda::linear_backward(gdx.data(), gdw.data(), with_bias ? gdb.data() : nullptr, gdy.data(),
                              gx.data(), nullptr, gw.data(), shape, precision, scratch, context());
        const double tol = gemm_tolerance(precision);
        EXPECT_TRUE(close(to_host(gy), y, tol));
        EXPECT_TRUE(close(to_host(gdx), dx, tol));
        EXPECT_TRUE(close(to_host(gdw), dw, tol));
        EXPECT_TRUE(close(to_host(gdb), db, kFp32));  // fp32 column sums in both precisions
        // Again: the same bits.
        const std::vector<float> y1 = to_host(gy);
        cuda::linear_forward(gy.data(), nullptr, gx.data(), gw.data(),
                             with_bias ? gb.data() : nullptr, shape, precision, scratch, context());
        EXPECT_TRUE(same_bits(to_host(gy), y1));
        // nullptr gradients are skipped.
        DeviceVec<float> gdw_only = to_device(dw0);
        cuda::linear_backward(nullptr, gdw_only.data(), nullptr, gdy.data(), gx.data(), nullptr,
                              gw.data(), shape, precision, scratch, context());
        EXPECT_TRUE(close(to_host(gdw_only), dw, tol));
        // dinp written over what it held (GradWrite::kOverwrite): the values of adding to zeros,
        // with the backend's own call too.
        DeviceVec<float> gdx_zero = to_device(std::vector<float>(nx, 0.f)),
                         gdx_over = to_device(dx0);
        cuda::linear_backward(gdx_zero.data(), nullptr, nullptr, gdy.data(), gx.data(), nullptr,
                              gw.data(), shape, precision, scratch, context());
        const std::unique_ptr<nn::Backend> be = make_nn_backend();
        be->linear_backward(gdx_over.data(), nullptr, nullptr, gdy.data(), gx.data(), nullptr,
                            gw.data(), shape, precision, nn::GradWrite::kOverwrite);
        EXPECT_EQ(to_host(gdx_over), to_host(gdx_zero));
        // Through the backend with its saved state (in bf16, x's bf16 copy): the same bits, and
        // the backward reads the copy, not x (x overwritten between the two, and not passed).
        const int64_t n_saved = be->linear_saved_floats(shape, precision);
        EXPECT_EQ(n_saved, precision == Precision::kBf16 ? (int64_t(nx) + 1) / 2 : 0);
        DeviceVec<float> saved{static_cast<size_t>(n_saved)}, by(ny),
            bx = to_device(x), bdx = to_device(dx0), bdw = to_device(dw0), bdb = to_device(db0);
        be->linear_forward(by.data(), saved.data(), bx.data(), gw.data(),
                           with_bias ? gb.data() : nullptr, shape, precision);
        EXPECT_TRUE(same_bits(to_host(by), y1));
        const bool kept = n_saved > 0;
        if (kept) bx.upload(random_normal(nx, 48), context().stream);
        be->linear_backward(bdx.data(), bdw.data(), with_bias ? bdb.data() : nullptr, gdy.data(),
                            kept ? nullptr : bx.data(), saved.data(), gw.data(), shape, precision,
                            nn::GradWrite::kAdd);
        EXPECT_TRUE(same_bits(to_host(bdx), to_host(gdx)));
        EXPECT_TRUE(same_bits(to_host(bdw), to_host(gdw)));
        EXPECT_TRUE(same_bits(to_host(bdb), to_host(gdb)));
      }
    }
  }
}

// The bf16 forward with a bias takes cuBLASLt's bias epilogue (cuda/gemm_bias.h): out written
// once, the values of broadcasting the bias and adding the GEMM with beta 1 (the same bits on the
// emulation; on a GPU two libraries' kernels, within their accumulation's tolerance), the same
// bits run to run, and operands at any alignment the bf16 copies can have (two bytes).
TEST(CudaNnOps, LinearBiasInTheGemmEpilogue) {
  ECMOE_REQUIRE_GPU();
  for (const GemmShape& s : kGemmShapes) {
    SCOPED_TRACE(s.name());
    const nn::LinearShape shape = s.linear();
    const size_t nx = s.inputs(), nw = s.weights(), ny = s.outputs();
    const std::vector<float> x = random_normal(nx, 61), w = random_normal(nw, 62, 0.1f),
                             b = random_normal(s.out_dim, 63);
    DeviceVec<float> gx = to_device(x), gw = to_device(w), gb = to_device(b), gy(ny), ref(ny);
    LinearScratch scratch;
    cuda::linear_forward(gy.data(), nullptr, gx.data(), gw.data(), gb.data(), shape,
                         Precision::kBf16, scratch, context());
    EXPECT_EQ(scratch.bias_gemm.runs(), 1) << "cuBLASLt took no bias-epilogue matmul here";
    const std::vector<float> y = to_host(gy);
    // The broadcast and beta-1 path on the same bf16 operands.
    DeviceVec<uint16_t> x16(nx), w16(nw);
    to_bf16(x16.data(), gx.data(), int64_t(nx), context().stream);
    to_bf16(w16.data(), gw.data(), int64_t(nw), context().stream);
    broadcast_rows(ref.data(), gb.data(), s.rows, s.out_dim, context().stream);
    Gemm g;
    g.m = s.rows, g.n = s.out_dim, g.k = s.in_dim;
    g.a = x16.data(), g.b = w16.data(), g.c = ref.data(), g.beta = 1.f;
    gemm(context().blas, g, Precision::kBf16);
    const std::vector<float> want = to_host(ref);
    EXPECT_TRUE(close(y, want, kBf16Accumulation));
#if ECMOE_CUDA_EMULATED
    EXPECT_TRUE(same_bits(y, want));
#endif
    cuda::linear_forward(gy.data(), nullptr, gx.data(), gw.data(), gb.data(), shape,
                         Precision::kBf16, scratch, context());
    EXPECT_TRUE(same_bits(to_host(gy), y));
    // Operands two bytes past an allocation's start, a bias four bytes past: still taken (the
    // heuristic is told the alignments), the same values.
    DeviceVec<uint16_t> x16_odd(nx + 1), w16_odd(nw + 1);
    DeviceVec<float> b_odd(size_t(s.out_dim) + 1), y_odd(ny);
    const auto copy = [](void* dst, const void* src, size_t bytes) {
      ECMOE_CUDA_CHECK(
          cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, context().stream));
    };
    copy(x16_odd.data() + 1, x16.data(), nx * sizeof(uint16_t));
    copy(w16_odd.data() + 1, w16.data(), nw * sizeof(uint16_t));
    copy(b_odd.data() + 1, gb.data(), size_t(s.out_dim) * sizeof(float));
    Gemm odd = g;
    odd.a = x16_odd.data() + 1, odd.b = w16_odd.data() + 1, odd.c = y_odd.data(), odd.beta = 0.f;
    ASSERT_TRUE(scratch.bias_gemm.run(odd, b_odd.data() + 1, context()));
    EXPECT_TRUE(close(to_host(y_odd), want, kBf16Accumulation));
  }
  // Not for it: a batch, beta 1, no bias.
  GemmBias direct;
  Gemm batched;
  batched.batch = 2;
  EXPECT_FALSE(direct.run(batched, nullptr, context()));
  EXPECT_EQ(direct.runs(), 0);
}

// The epilogue's two other outputs (cuda/gemm_bias.h), each taken by cuBLASLt and against the
// ops they stand for on the same inputs:
// - bf16 (linear_forward_bf16): the bf16 rounding of linear_forward's output, bitwise on the
//   emulation (a GPU may pick another kernel for a bf16 D: there within one bf16 step);
// - a residual (linear_residual_forward): linear_forward, then the residual added, in bf16
//   within accumulation (the epilogue adds the residual before the bias), in fp32 bitwise (the
//   two ops themselves); also through the backend, the same bits as the direct call, and the
//   CPU backend's default (nn::Backend's) is the CPU's two ops bitwise.
TEST(CudaNnOps, LinearBf16AndResidualOutputsInTheGemmEpilogue) {
  ECMOE_REQUIRE_GPU();
  const std::unique_ptr<nn::Backend> be = make_nn_backend();
  for (const GemmShape& s : kGemmShapes) {
    SCOPED_TRACE(s.name());
    const nn::LinearShape shape = s.linear();
    const size_t nx = s.inputs(), nw = s.weights(), ny = s.outputs();
    const std::vector<float> x = random_normal(nx, 71), w = random_normal(nw, 72, 0.1f),
                             b = random_normal(s.out_dim, 73), r = random_normal(ny, 74);
    DeviceVec<float> gx = to_device(x), gw = to_device(w), gb = to_device(b), gr = to_device(r),
                     gy(ny);
    LinearScratch scratch;
    cuda::linear_forward(gy.data(), nullptr, gx.data(), gw.data(), gb.data(), shape,
                         Precision::kBf16, scratch, context());
    const std::vector<float> y = to_host(gy);
    // bf16 out
    DeviceVec<uint16_t> y16(ny), want16(ny);
    to_bf16(want16.data(), gy.data(), int64_t(ny), context().stream);
    const int64_t runs = scratch.bias_gemm.runs();
    cuda::linear_forward_bf16(y16.data(), nullptr, gx.data(), gw.data(), gb.data(), shape, scratch,
                              context());
    EXPECT_EQ(scratch.bias_gemm.runs(), runs + 1) << "cuBLASLt took no bf16-output epilogue here";
    std::vector<float> got16(ny), want(ny);
    {
      const std::vector<uint16_t> g = to_host(y16), h = to_host(want16);
      for (size_t i = 0; i < ny; ++i) got16[i] = bf16_to_float(g[i]), want[i] = bf16_to_float(h[i]);
    }
    if (kEmulated)
      EXPECT_TRUE(same_bits(got16, want));
    else
      EXPECT_TRUE(close(got16, want, kBf16Step));
    // Without a bias there is no epilogue to take: the fallback rounds an fp32 scratch, the bits
    // of rounding linear_forward's output.
    DeviceVec<float> plain(ny);
    cuda::linear_forward(plain.data(), nullptr, gx.data(), gw.data(), nullptr, shape,
                         Precision::kBf16, scratch, context());
    to_bf16(want16.data(), plain.data(), int64_t(ny), context().stream);
    cuda::linear_forward_bf16(y16.data(), nullptr, gx.data(), gw.data(), nullptr, shape, scratch,
                              context());
    EXPECT_EQ(to_host(y16), to_host(want16));
    // the residual
    std::vector<float> plus = y;
    for (size_t i = 0; i < ny; ++i) plus[i] += r[i];
    for (const Precision precision : {Precision::kBf16, Precision::kFp32}) {
      SCOPED_TRACE(precision_name(precision));
      DeviceVec<float> ref(ny), out(ny), through(ny);
      cuda::linear_forward(ref.data(), nullptr, gx.data(), gw.data(), gb.data(), shape, precision,
                           scratch, context());
      cuda::add_inplace(ref.data(), gr.data(), int64_t(ny), context().stream);
      const int64_t before = scratch.bias_gemm.runs();
      cuda::linear_residual_forward(out.data(), nullptr, gx.data(), gw.data(), gb.data(), gr.data(),
                                    shape, precision, scratch, context());
      const bool bf16 = precision == Precision::kBf16;
      EXPECT_EQ(scratch.bias_gemm.runs(), before + (bf16 ? 1 : 0));
      const std::vector<float> got = to_host(out);
      if (bf16) {
        EXPECT_TRUE(close(got, to_host(ref), kBf16Accumulation));
        EXPECT_TRUE(close(got, plus, kBf16Accumulation));
      } else {
        EXPECT_TRUE(same_bits(got, to_host(ref)));
      }
      const int64_t n_saved = be->linear_saved_floats(shape, precision);
      DeviceVec<float> saved{static_cast<size_t>(n_saved)};
      be->linear_residual_forward(through.data(), saved.data(), gx.data(), gw.data(), gb.data(),
                                  gr.data(), shape, precision);
      EXPECT_TRUE(same_bits(to_host(through), got));
      // The CPU backend: nn::linear_forward, then the residual.
      std::vector<float> cpu(ny), cpu_two(ny);
      nn::cpu_backend().linear_residual_forward(cpu.data(), nullptr, x.data(), w.data(), b.data(),
                                                r.data(), shape, precision);
      nn::linear_forward(cpu_two.data(), x.data(), w.data(), b.data(), shape, precision);
      nn::add_inplace(cpu_two.data(), r.data(), int64_t(ny));
      EXPECT_TRUE(same_bits(cpu, cpu_two));
      EXPECT_TRUE(close(got, cpu, gemm_tolerance(precision)));
    }
  }
}

TEST(CudaNnOps, TiedOutputMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    for (const GemmShape& s : kGemmShapes) {
      SCOPED_TRACE(std::string(precision_name(precision)) + ", rows " + std::to_string(s.rows) +
                   ", dim " + std::to_string(s.in_dim) + ", vocab " + std::to_string(s.out_dim));
      const nn::LinearShape shape{s.rows, s.in_dim, s.out_dim};
      const size_t nh = size_t(s.rows) * s.in_dim, nt = size_t(s.out_dim) * s.in_dim,
                   nl = size_t(s.rows) * s.out_dim;
      const std::vector<float> h = random_normal(nh, 51), table = random_normal(nt, 52, 0.1f),
                               dl = random_normal(nl, 53), dh0 = random_normal(nh, 54),
                               dt0 = random_normal(nt, 55);
      std::vector<float> logits(nl), dh = dh0, dt = dt0;
      nn::tied_output_forward(logits.data(), h.data(), table.data(), shape, precision);
      nn::tied_output_backward(dh.data(), dt.data(), dl.data(), h.data(), table.data(), shape,
                               precision);
      DeviceVec<float> gh = to_device(h), gt = to_device(table), gdl = to_device(dl), glogits(nl),
                       gdh = to_device(dh0), gdt = to_device(dt0);
      LinearScratch scratch;
      cuda::tied_output_forward(glogits.data(), gh.data(), gt.data(), shape, precision, scratch,
                                context());
      cuda::tied_output_backward(gdh.data(), gdt.data(), gdl.data(), gh.data(), gt.data(), shape,
                                 precision, scratch, context());
      const double tol = gemm_tolerance(precision);
      EXPECT_TRUE(close(to_host(glogits), logits, tol));
      EXPECT_TRUE(close(to_host(gdh), dh, tol));
      EXPECT_TRUE(close(to_host(gdt), dt, tol));
    }
  }
}

TEST(CudaNnOps, AttentionMatchesTheCpu) {
  ECMOE_REQUIRE_GPU();
  struct Shape {
    int batch, seq_len, heads, head_dim;
    bool causal, padded;
  };
  for (const Shape& s : {Shape{1, 1, 1, 1, false, false}, Shape{2, 7, 3, 5, false, true},
                         Shape{2, 7, 3, 5, true, false}, Shape{3, 77, 2, 33, true, false},
                         Shape{2, 77, 4, 16, false, true}, Shape{1, 100, 2, 64, true, true},
                         // more sequences than heads: the GEMMs go a call per head
                         Shape{5, 33, 2, 16, false, true}, Shape{4, 20, 4, 8, true, true}}) {
    for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
      const nn::AttentionConfig cfg{s.batch, s.seq_len, s.heads, s.head_dim, s.causal, precision};
      SCOPED_TRACE(std::string(precision_name(precision)) + ", batch " + std::to_string(s.batch) +
                   ", seq " + std::to_string(s.seq_len) + ", heads " + std::to_string(s.heads) +
                   ", head_dim " + std::to_string(s.head_dim) + (s.causal ? ", causal" : "") +
                   (s.padded ? ", padded" : ""));
      const int d = cfg.model_dim();
      std::vector<int> valid(s.batch);
      for (int b = 0; b < s.batch; ++b)
        valid[b] = b % 2 == 0 ? s.seq_len : std::max(1, s.seq_len / 2 - b);
      const int* cpu_valid = s.padded ? valid.data() : nullptr;
      const size_t nqkv = size_t(s.batch) * s.seq_len * 3 * d,
                   nout = size_t(s.batch) * s.seq_len * d,
                   nprobs = size_t(s.batch) * s.heads * s.seq_len * s.seq_len;
      const std::vector<float> qkv = random_normal(nqkv, 91), dout = random_normal(nout, 92),
                               dqkv0 = random_normal(nqkv, 93);
      std::vector<float> out(nout), probs(nprobs), dqkv = dqkv0;
      nn::attention_forward(out.data(), probs.data(), qkv.data(), cfg, cpu_valid);
      nn::attention_backward(dqkv.data(), dout.data(), qkv.data(), probs.data(), cfg, cpu_valid);

      DeviceVec<int> gvalid = to_device(valid);
      const int* gpu_valid = s.padded ? gvalid.data() : nullptr;
      DeviceVec<float> gqkv = to_device(qkv), gdout = to_device(dout), gout(nout), gprobs(nprobs);
      AttentionScratch scratch;
      cuda::attention_forward(gout.data(), gprobs.data(), gqkv.data(), cfg, gpu_valid, scratch,
                              context());
      const std::vector<float> out1 = to_host(gout), probs1 = to_host(gprobs);
      const double tol = precision == Precision::kFp32 ? kFp32 : kBf16Step;
      EXPECT_TRUE(close(probs1, probs, kFp32));
      EXPECT_TRUE(close(out1, out, tol));
      for (size_t i = 0; i < nprobs; ++i)  // masked entries are exactly 0 on both sides
        if (probs[i] == 0.f) {
          ASSERT_EQ(probs1[i], 0.f) << "at " << i;
        }
      cuda::attention_forward(gout.data(), gprobs.data(), gqkv.data(), cfg, gpu_valid, scratch,
                              context());
      EXPECT_TRUE(same_bits(to_host(gout), out1));
      EXPECT_TRUE(same_bits(to_host(gprobs), probs1));
      // The backward from the CPU's probabilities, twice.
      DeviceVec<float> cprobs = to_device(probs);
      std::vector<float> first;
      for (int run = 0; run < 2; ++run) {
        DeviceVec<float> gdqkv = to_device(dqkv0);
        cuda::attention_backward(gdqkv.data(), gdout.data(), gqkv.data(), cprobs.data(), cfg,
                                 gpu_valid, scratch, context());
        const std::vector<float> got = to_host(gdqkv);
        if (run == 0) {
          EXPECT_TRUE(close(got, dqkv, tol));
          first = got;
        } else {
          EXPECT_TRUE(same_bits(got, first));
        }
      }
    }
  }
}

// A table with a decayed and an undecayed tensor, one of them over two of AdamW's chunks, and
// sizes that leave padding between tensors.
TensorTable optimizer_table() {
  TensorTable table;
  table.add("embed", {301, 129});  // 38829 floats: two chunks of 32768
  table.add("ln.gain", {77});
  table.add("w", {3, 5, 7});
  table.add("b", {1});
  return table;
}

void fill(FlatBuffer& buf, uint64_t seed, float scale) {
  const std::vector<float> v = random_normal(size_t(buf.size()), seed, scale);
  for (const TensorSpec& spec : buf.table().specs())  // padding stays 0
    std::copy(v.begin() + spec.offset, v.begin() + spec.offset + spec.numel(),
              buf.data() + spec.offset);
}

std::vector<float> host_copy(const FlatBuffer& buf) {
  return std::vector<float>(buf.data(), buf.data() + buf.size());
}

// The optimizer tests' start: optimizer_table(), weight decay on, random parameters, the CPU's
// AdamW (the reference) and a gradient buffer.
struct OptimizerCase {
  explicit OptimizerCase(uint64_t seed) { fill(params, seed, 0.5f); }
  TensorTable table = optimizer_table();
  AdamWConfig config = [] {
    AdamWConfig c;
    c.weight_decay = 0.1;
    return c;
  }();
  FlatBuffer params{table}, grads{table};
  AdamW cpu{table, config};
};

TEST(CudaNnOps, AdamWIsTheCpusBitwise) {
  ECMOE_REQUIRE_GPU();
  OptimizerCase c(61);
  auto& [table, config, params, grads, cpu] = c;
  // Two steps on the CPU first: the device continues from a resumed state.
  const float lrs[] = {1e-2f, 3e-3f, 1e-3f, 5e-4f, 2e-2f, 1e-4f};
  int s = 0;
  for (; s < 2; ++s) {
    fill(grads, 70 + s, 1.f);
    cpu.step(params, grads, lrs[s]);
  }
  DeviceAdamW gpu(cpu, stream());
  EXPECT_EQ(gpu.step_count(), 2);
  DeviceVec<float> gparams = to_device(host_copy(params));
  // The same steps on parameters and gradients one float past a 16-byte boundary: the kernel
  // that takes one element at a time (aligned ones take four).
  DeviceAdamW gpu_unaligned(cpu, stream());
  const auto shifted = [](std::vector<float> x) {
    x.insert(x.begin(), 0.f);
    return x;
  };
  DeviceVec<float> gparams_unaligned = to_device(shifted(host_copy(params)));
  for (; s < 6; ++s) {
    fill(grads, 70 + s, s == 3 ? 1e-6f : 1.f);  // a tiny-gradient step too
    DeviceVec<float> ggrads = to_device(host_copy(grads));
    DeviceVec<float> ggrads_unaligned = to_device(shifted(host_copy(grads)));
    cpu.step(params, grads, lrs[s]);
    gpu.step(gparams.data(), ggrads.data(), lrs[s], stream());
    gpu_unaligned.step(gparams_unaligned.data() + 1, ggrads_unaligned.data() + 1, lrs[s], stream());
    SCOPED_TRACE("step " + std::to_string(s + 1));
    EXPECT_TRUE(same_bits(to_host(gparams), host_copy(params)));
    EXPECT_TRUE(same_bits(to_host(gpu.m()), host_copy(cpu.m())));
    EXPECT_TRUE(same_bits(to_host(gpu.v()), host_copy(cpu.v())));
    EXPECT_TRUE(same_bits(to_host(gparams_unaligned), shifted(host_copy(params))));
    EXPECT_TRUE(same_bits(to_host(gpu_unaligned.m()), host_copy(cpu.m())));
  }
  AdamW back(table, config);
  gpu.copy_to(back, stream());
  EXPECT_EQ(back.step_count(), cpu.step_count());
  EXPECT_TRUE(same_bits(host_copy(back.m()), host_copy(cpu.m())));
  EXPECT_TRUE(same_bits(host_copy(back.v()), host_copy(cpu.v())));
}

// The training parameters' bf16 copy (Context::params_bf16): none until a bf16 GEMM asks for a
// weight of the range, then written whole by every AdamW step with the bits of rounding each
// updated parameter (every tensor, padding aside); an upload into the parameters drops it until
// the next step; the optimizer's end unregisters the range.
TEST(CudaNnOps, TheParametersBf16CopyFollowsEveryStep) {
  ECMOE_REQUIRE_GPU();
  OptimizerCase c(131);
  auto& [table, config, params, grads, cpu] = c;
  const Context& ctx = context();
  const std::unique_ptr<nn::Backend> backend = make_nn_backend();
  std::unique_ptr<OptimizerDevice> gpu = make_optimizer_device(table, config);
  gpu->load(params, cpu);
  const TensorSpec& w = table.spec("w");
  const auto copy_of = [&](const TensorSpec& spec) {
    return ctx.bf16_weights(gpu->params() + spec.offset, spec.numel());
  };
  const auto step = [&](uint64_t seed) {
    fill(grads, seed, 1.f);
    backend->upload(gpu->grads(), grads.data(), size_t(grads.size()) * sizeof(float));
    cpu.step(params, grads, 1e-2f);
    gpu->adamw_step(1e-2f);
  };
  const auto expect_copy_is_params = [&] {
    for (const TensorSpec& spec : table.specs()) {
      const uint16_t* copy = copy_of(spec);
      ASSERT_NE(copy, nullptr) << spec.name;
      std::vector<uint16_t> got(size_t(spec.numel()));
      backend->download(got.data(), copy, got.size() * sizeof(uint16_t));
      for (int64_t i = 0; i < spec.numel(); ++i)
        ASSERT_EQ(got[size_t(i)], float_to_bf16(params.data()[spec.offset + i]))
            << spec.name << " element " << i;
    }
  };
  step(132);
  EXPECT_EQ(ctx.params_bf16.copy, nullptr);  // nobody asked: no copy made
  EXPECT_EQ(copy_of(w), nullptr);            // the first ask finds none ...
  EXPECT_TRUE(ctx.params_bf16.wanted);
  step(133);  // ... and the next step makes it
  expect_copy_is_params();
  float outside = 0.f;  // memory outside the range has no copy
  EXPECT_EQ(ctx.bf16_weights(&outside, 1), nullptr);
  // An upload into one tensor drops the copy; the next step makes it whole again.
  backend->upload(gpu->params() + w.offset, params.data() + w.offset, sizeof(float));
  EXPECT_EQ(copy_of(table.spec("embed")), nullptr);
  step(134);
  expect_copy_is_params();
  gpu.reset();
  EXPECT_EQ(ctx.params_bf16.params, nullptr);
}

// The training path's clipping (cuda/optimizer_device.h): the factor left on the device and
// applied by AdamW as it reads each gradient. Parameters and moments have the bits of the CPU's
// clip-then-step, clipped (small max_norm) or not (large, 0); gradients stored between the two
// come out clipped, and are not clipped twice.
TEST(CudaNnOps, ClippingInsideAdamWIsTheCpusBitwise) {
  ECMOE_REQUIRE_GPU();
  OptimizerCase c(91);
  auto& [table, config, params, grads, cpu] = c;
  const std::unique_ptr<OptimizerDevice> gpu = make_optimizer_device(table, config);
  gpu->load(params, cpu);
  const float max_norms[] = {1e-2f, 1e30f, 0.f, 5e-2f};
  for (int s = 0; s < 4; ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    fill(grads, 92 + uint64_t(s), 1.f);
    gpu->zero_grads();
    // On the backend's stream, after zero_grads: a plain cudaMemcpy (the legacy stream) would
    // not wait for that non-blocking stream's memset.
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(gpu->grads(), grads.data(),
                                     size_t(grads.size()) * sizeof(float), cudaMemcpyHostToDevice,
                                     stream()));
    const float cpu_norm = clip_grad_norm(grads, max_norms[s]);
    const float gpu_norm = gpu->clip_grad_norm(max_norms[s]);
    EXPECT_EQ(std::memcmp(&gpu_norm, &cpu_norm, sizeof(float)), 0);
    if (s == 3) {  // stored between clipping and the step: clipped, as the CPU's
      FlatBuffer stored(table);
      gpu->store_grads(stored);
      EXPECT_TRUE(same_bits(host_copy(stored), host_copy(grads)));
    }
    cpu.step(params, grads, 1e-2f);
    gpu->adamw_step(1e-2f);
    FlatBuffer gparams(table);
    AdamW gadam(table, config);
    gpu->store(gparams, gadam);
    EXPECT_TRUE(same_bits(host_copy(gparams), host_copy(params)));
    EXPECT_TRUE(same_bits(host_copy(gadam.m()), host_copy(cpu.m())));
    EXPECT_TRUE(same_bits(host_copy(gadam.v()), host_copy(cpu.v())));
  }
}

TEST(CudaNnOps, GradNormAndClippingAreTheCpusBitwise) {
  ECMOE_REQUIRE_GPU();
  // Sizes around the norm's chunk (16384) and its lanes (8).
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(16384), int64_t(16391), int64_t(100003)}) {
    SCOPED_TRACE("n " + std::to_string(n));
    TensorTable ta, tb;
    ta.add("a", {n});
    tb.add("b", {3, 5});
    tb.add("c", {n / 2 + 1});
    FlatBuffer a(ta), b(tb);
    fill(a, 81, 1.f);
    fill(b, 82, 1e3f);
    a.data()[0] = 1e20f;  // squares beyond float's range, not double's
    GradNormScratch scratch;
    const float norm_a = grad_norm(a);
    DeviceVec<float> ga = to_device(host_copy(a)), gb = to_device(host_copy(b));
    const float gnorm_a = cuda::grad_norm(ga.data(), a.size(), scratch, stream());
    EXPECT_EQ(std::memcmp(&gnorm_a, &norm_a, sizeof(float)), 0) << gnorm_a << " vs " << norm_a;
    EXPECT_EQ(cuda::grad_norm(ga.data(), a.size(), scratch, stream()), gnorm_a);  // run to run

    // Two buffers as one gradient: clipped (small max_norm), measured (0), left alone (large).
    a.data()[0] = 0.25f;
    for (float max_norm : {1e-3f, 0.f, 1e30f}) {
      FlatBuffer ca = a, cb = b;
      FlatBuffer* const cpu_buffers[] = {&ca, &cb};
      const float cpu_norm = clip_grad_norm(cpu_buffers, max_norm);
      DeviceVec<float> da = to_device(host_copy(a)), db = to_device(host_copy(b));
      const DeviceGrads gpu_buffers[] = {{da.data(), a.size()}, {db.data(), b.size()}};
      const float gpu_norm = cuda::clip_grad_norm(gpu_buffers, max_norm, scratch, stream());
      SCOPED_TRACE("max_norm " + std::to_string(max_norm));
      EXPECT_EQ(std::memcmp(&gpu_norm, &cpu_norm, sizeof(float)), 0)
          << gpu_norm << " vs " << cpu_norm;
      EXPECT_TRUE(same_bits(to_host(da), host_copy(ca)));
      EXPECT_TRUE(same_bits(to_host(db), host_copy(cb)));
    }
  }
  // A NaN gradient: the norm is NaN and nothing is scaled, on both sides.
  TensorTable t;
  t.add("x", {1000});
  FlatBuffer g(t);
  fill(g, 83, 1.f);
  g.data()[500] = NAN;
  FlatBuffer cpu_g = g;
  const float cpu_norm = clip_grad_norm(cpu_g, 1e-3f);
  DeviceVec<float> dg = to_device(host_copy(g));
  GradNormScratch scratch;
  const DeviceGrads one[] = {{dg.data(), g.size()}};
  const float gpu_norm = cuda::clip_grad_norm(one, 1e-3f, scratch, stream());
  EXPECT_TRUE(std::isnan(cpu_norm));
  EXPECT_TRUE(std::isnan(gpu_norm));
  EXPECT_TRUE(same_bits(to_host(dg), host_copy(cpu_g)));
}

// The device's part of a clipping over device and host buffers (optim/optimizer_device.h): the sum
// of squares in the CPU's order, the same double; the scaling, the same floats (and none at 1).
TEST(CudaNnOps, GradSumOfSquaresAndScalingAreTheCpusBitwise) {
  ECMOE_REQUIRE_GPU();
  GradNormScratch scratch;
  EXPECT_EQ(cuda::grad_sum_of_squares(nullptr, 0, scratch, stream()), 0.0);
  for (int64_t n : {int64_t(1), int64_t(9), int64_t(16384), int64_t(16391), int64_t(100003)}) {
    SCOPED_TRACE("n " + std::to_string(n));
    TensorTable t;
    t.add("g", {n});
    FlatBuffer g(t);
    fill(g, 84, 1.f);
    g.data()[0] = 1e20f;  // a square beyond float's range
    DeviceVec<float> dg = to_device(host_copy(g));
    const double cpu = grad_sum_of_squares(g);
    const double gpu = cuda::grad_sum_of_squares(dg.data(), g.size(), scratch, stream());
    EXPECT_EQ(std::memcmp(&gpu, &cpu, sizeof(double)), 0) << gpu << " vs " << cpu;
    EXPECT_EQ(cuda::grad_sum_of_squares(dg.data(), g.size(), scratch, stream()), gpu);
    for (const float scale : {0.37f, 1.f}) {
      FlatBuffer scaled = g;
      scale_grads(scaled, scale);
      DeviceVec<float> ds = to_device(host_copy(g));
      cuda::scale_grads(ds.data(), g.size(), scale, stream());
      EXPECT_TRUE(same_bits(to_host(ds), host_copy(scaled)));
    }
  }
}

}  // namespace
