// nn/attention_decode.h: one query row over a KV cache is the last row of causal attention over
// the same sequence, against nn::attention_forward and the double-precision reference, at lengths
// 1, 2, 7, 33 and 70 (across the causal kernel's 32-query blocks), 1 to 3 heads and head_dim 1, 7,
// 20 and 65; a cache of one position gives its value exactly; rows past the length are never
// read; bad sizes are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/attention.h"
#include "nn/attention_decode.h"
#include "nn_test_util.h"
#include "support/nn/attention_reference.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

struct Cache {
  std::vector<float> q, keys, values;  // [d], [rows, d], [rows, d]
};

// The last position's query and every position's key and value of qkv [T, 3·d], in rows of a
// cache of `rows` >= T positions; the rows past T hold NaN (a read of one would show).
Cache cache_of(const std::vector<float>& qkv, int T, int d, int rows) {
  Cache c;
  c.q.assign(qkv.begin() + int64_t(T - 1) * 3 * d, qkv.begin() + int64_t(T - 1) * 3 * d + d);
  c.keys.assign(std::size_t(rows) * d, NAN);
  c.values.assign(std::size_t(rows) * d, NAN);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i) {
      c.keys[std::size_t(t) * d + i] = qkv[std::size_t(t) * 3 * d + d + i];
      c.values[std::size_t(t) * d + i] = qkv[std::size_t(t) * 3 * d + 2 * d + i];
    }
  return c;
}

TEST(AttentionDecode, IsTheLastRowOfCausalAttention) {
  for (const int T : {1, 2, 7, 33, 70})
    for (const int heads : {1, 3})
      for (const int hd : {1, 7, 20, 65}) {
        SCOPED_TRACE("T " + std::to_string(T) + " H " + std::to_string(heads) + " hd " +
                     std::to_string(hd));
        const int d = heads * hd;
        AttentionConfig full{1, T, heads, hd, true};
        const std::vector<float> qkv = random_floats(std::size_t(T) * 3 * d, 31 + T + hd, 1.5f);
        std::vector<float> out(std::size_t(T) * d), probs(std::size_t(heads) * T * T);
        attention_forward(out.data(), probs.data(), qkv.data(), full);
        std::vector<double> ref(std::size_t(T) * d);
        const std::vector<double> qkv64 = to_double(qkv);
        attention_forward_reference(ref.data(), qkv64.data(), full);

        const Cache c = cache_of(qkv, T, d, T + 3);
        std::vector<float> got(std::size_t(d), NAN);
        attention_decode(got.data(), c.q.data(), c.keys.data(), c.values.data(), {T, heads, hd});
        const std::vector<float> last(out.end() - d, out.end());
        const std::vector<double> last_ref(ref.end() - d, ref.end());
        EXPECT_TRUE(all_close(got, last, 1e-5, 1e-6));
        EXPECT_TRUE(all_close(got, last_ref, 1e-5, 1e-6));
      }
}

TEST(AttentionDecode, OnePositionGivesItsValue) {
  const int heads = 3, hd = 5, d = heads * hd;
  const std::vector<float> qkv = random_floats(std::size_t(3) * d, 7, 4.f);
  const Cache c = cache_of(qkv, 1, d, 2);
  std::vector<float> got(static_cast<std::size_t>(d));
  attention_decode(got.data(), c.q.data(), c.keys.data(), c.values.data(), {1, heads, hd});
  EXPECT_EQ(got, std::vector<float>(c.values.begin(), c.values.begin() + d));
}

TEST(AttentionDecode, RefusesBadSizes) {
  float x = 0.f;
  for (const AttentionDecodeConfig& bad :
       {AttentionDecodeConfig{0, 1, 1}, AttentionDecodeConfig{1, 0, 1},
        AttentionDecodeConfig{1, 1, 0}, AttentionDecodeConfig{-1, 1, 1}})
    EXPECT_THROW(attention_decode(&x, &x, &x, &x, bad), ecmoe::Error);
}

}  // namespace
