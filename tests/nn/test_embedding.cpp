#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/embedding.h"
#include "nn_test_util.h"
#include "support/nn/embedding_reference.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

std::vector<int> random_tokens(const EmbeddingConfig& c, uint64_t seed) {
  ecmoe::Rng rng(seed, 3);
  std::vector<int> t(size_t(c.batch) * c.seq_len);
  for (size_t i = 0; i < t.size(); ++i) t[i] = int(rng.below(i, c.vocab_size));
  return t;
}

std::string describe(const EmbeddingConfig& c) {
  return "B " + std::to_string(c.batch) + " T " + std::to_string(c.seq_len) + " dim " +
         std::to_string(c.dim) + " vocab " + std::to_string(c.vocab_size);
}

// vocab 1 and 2 make every token repeat many times (the scatter-add's hard case); dim 1, 17, 33
// are not multiples of the 16-column blocks.
const EmbeddingConfig kConfigs[] = {{1, 1, 1, 1}, {3, 7, 17, 2}, {4, 9, 33, 50}, {2, 16, 64, 11}};

}  // namespace

TEST(Embedding, MatchesReferenceForwardAndBackward) {
  for (const auto& c : kConfigs)
    for (bool with_pos : {true, false}) {
      SCOPED_TRACE(describe(c) + (with_pos ? " with positions" : " tokens only"));
      const auto tokens = random_tokens(c, 1);
      const auto table = random_floats(size_t(c.vocab_size) * c.dim, 2);
      const auto pos = random_floats(size_t(c.seq_len) * c.dim, 3);
      const auto dout = random_floats(size_t(c.batch) * c.seq_len * c.dim, 4);
      std::vector<float> out(dout.size());
      embedding_forward(out.data(), tokens.data(), table.data(), with_pos ? pos.data() : nullptr,
                        c);
      auto dtable = random_floats(table.size(), 5), dpos = random_floats(pos.size(), 6);
      auto r_dtable = to_double(dtable), r_dpos = to_double(dpos);
      embedding_backward(dtable.data(), with_pos ? dpos.data() : nullptr, dout.data(),
                         tokens.data(), c);

      auto table_d = to_double(table), pos_d = to_double(pos), dout_d = to_double(dout);
      std::vector<double> ref(out.size());
      embedding_forward_reference(ref.data(), tokens.data(), table_d.data(),
                                  with_pos ? pos_d.data() : nullptr, c);
      embedding_backward_reference(r_dtable.data(), with_pos ? r_dpos.data() : nullptr,
                                   dout_d.data(), tokens.data(), c);
      EXPECT_TRUE(all_close(out, ref, 1e-7, 0));  // one fp32 addition: exact up to one rounding
      EXPECT_TRUE(all_close(dtable, r_dtable, kFloatRel, kFloatAbs));
      EXPECT_TRUE(all_close(dpos, r_dpos, kFloatRel, kFloatAbs));
    }
}

TEST(Embedding, GradientsMatchFiniteDifferences) {
  const EmbeddingConfig c{2, 5, 3, 4};
  const auto tokens = random_tokens(c, 7);
  auto table = to_double(random_floats(size_t(c.vocab_size) * c.dim, 8));
  auto pos = to_double(random_floats(size_t(c.seq_len) * c.dim, 9));
  const auto w = random_floats(size_t(c.batch) * c.seq_len * c.dim, 10);
  const auto w_d = to_double(w);
  std::vector<double> out(w.size());
  auto loss = [&] {
    embedding_forward_reference(out.data(), tokens.data(), table.data(), pos.data(), c);
    return weighted_sum(out, w_d);
  };
  const auto n_table = numeric_gradient(table, loss), n_pos = numeric_gradient(pos, loss);
  std::vector<float> dtable(table.size()), dpos(pos.size());
  embedding_backward(dtable.data(), dpos.data(), w.data(), tokens.data(), c);
  EXPECT_TRUE(all_close(dtable, n_table, kGradRel, kGradAbs));
  EXPECT_TRUE(all_close(dpos, n_pos, kGradRel, kGradAbs));
}

// Many repeats of few tokens: the scatter-add's sums must not depend on the thread count.
TEST(Embedding, BitwiseIdenticalAtOneAndTwoThreads) {
  const EmbeddingConfig c{8, 64, 80, 5};
  const auto tokens = random_tokens(c, 11);
  const auto table = random_floats(size_t(c.vocab_size) * c.dim, 12);
  const auto pos = random_floats(size_t(c.seq_len) * c.dim, 13);
  const auto dout = random_floats(size_t(c.batch) * c.seq_len * c.dim, 14);
  auto run = [&] {
    std::vector<float> out(dout.size()), dtable(table.size()), dpos(pos.size());
    embedding_forward(out.data(), tokens.data(), table.data(), pos.data(), c);
    embedding_backward(dtable.data(), dpos.data(), dout.data(), tokens.data(), c);
    out.insert(out.end(), dtable.begin(), dtable.end());
    out.insert(out.end(), dpos.begin(), dpos.end());
    return out;
  };
  std::vector<float> one, two;
  with_threads(1, [&] { one = run(); });
  with_threads(2, [&] { two = run(); });
  EXPECT_TRUE(bitwise_equal(one, two));
}

TEST(Embedding, RejectsTokensOutsideTheVocabulary) {
  const EmbeddingConfig c{1, 2, 4, 3};
  const auto table = random_floats(12, 15);
  std::vector<float> out(8);
  for (std::vector<int> bad : {std::vector<int>{0, 3}, std::vector<int>{-1, 0}})
    EXPECT_THROW(embedding_forward(out.data(), bad.data(), table.data(), nullptr, c), ecmoe::Error);
}
