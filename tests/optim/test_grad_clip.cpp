// Global gradient-norm clipping: the norm against a double reference and bitwise across thread
// counts; the clipping factor as torch.nn.utils.clip_grad_norm_ applies it.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"

using namespace ecmoe;

namespace {

TensorTable make_table() {
  TensorTable t;
  t.add("a", {333, 101});  // not a multiple of any chunk size
  t.add("b", {7});
  t.add("c", {2, 40000});
  return t;
}

void fill(FlatBuffer& g, uint64_t seed, float scale) {
  const Rng rng(seed, 1);
  for (const TensorSpec& spec : g.table().specs())
    for (int64_t i = 0; i < spec.numel(); ++i)
      g.get(spec.name)[i] = scale * rng.normal(uint64_t(spec.offset + i));
}

double reference_norm(const FlatBuffer& g) {
  double s = 0;
  for (const TensorSpec& spec : g.table().specs())
    for (int64_t i = 0; i < spec.numel(); ++i)
      s += double(g.get(spec.name)[i]) * g.get(spec.name)[i];
  return std::sqrt(s);
}

}  // namespace

TEST(GradClip, NormMatchesReference) {
  const TensorTable table = make_table();
  FlatBuffer g(table);
  fill(g, 1, 0.01f);
  const double ref = reference_norm(g);
  EXPECT_NEAR(grad_norm(g), ref, 1e-6 * ref);
}

TEST(GradClip, ClipsToMaxNormAndReturnsNormBefore) {
  const TensorTable table = make_table();
  FlatBuffer g(table);
  fill(g, 2, 0.01f);
  const float before = grad_norm(g);
  const float a0 = g.get("a")[0];
  EXPECT_EQ(clip_grad_norm(g, 0.5f), before);
  EXPECT_NEAR(grad_norm(g), 0.5, 1e-5);
  // torch's factor: max_norm / (norm + 1e-6).
  EXPECT_FLOAT_EQ(g.get("a")[0], a0 * float(0.5 / (double(before) + 1e-6)));
}

// Two buffers clip as one gradient: the joint norm, one factor for both.
TEST(GradClip, SeveralBuffersClipAsOne) {
  const TensorTable table = make_table();
  FlatBuffer a(table), b(table), a0(table), b0(table);
  fill(a, 5, 0.01f);
  fill(b, 6, 0.02f);
  std::memcpy(a0.data(), a.data(), size_t(a.size()) * sizeof(float));
  std::memcpy(b0.data(), b.data(), size_t(b.size()) * sizeof(float));
  const double na = grad_norm(a), nb = grad_norm(b);
  FlatBuffer* const both[] = {&a, &b};
  const float joint = clip_grad_norm(both, 0.5f);
  EXPECT_NEAR(joint, std::sqrt(na * na + nb * nb), 1e-6 * joint);
  const float factor = float(0.5 / (double(joint) + 1e-6));
  EXPECT_FLOAT_EQ(a.get("a")[0], a0.get("a")[0] * factor);
  EXPECT_FLOAT_EQ(b.get("b")[1], b0.get("b")[1] * factor);
  const double after_a = grad_norm(a), after_b = grad_norm(b);
  EXPECT_NEAR(std::sqrt(after_a * after_a + after_b * after_b), 0.5, 1e-5);
  // One buffer through the list is the single-buffer call, bit for bit.
  FlatBuffer c(table), d(table);
  fill(c, 7, 0.01f);
  std::memcpy(d.data(), c.data(), size_t(c.size()) * sizeof(float));
  FlatBuffer* const one[] = {&c};
  EXPECT_EQ(clip_grad_norm(one, 0.1f), clip_grad_norm(d, 0.1f));
  EXPECT_EQ(std::memcmp(c.data(), d.data(), size_t(c.size()) * sizeof(float)), 0);
}

// A gradient kept partly on an optimizer device and partly on the host (a fine-tuned encoder and
// its task head) clips as clip_grad_norm over host copies of both, device first: the same norm,
// the same scaled bits; clipped, measured only (0) and left alone (large), and a NaN.
TEST(GradClip, ADevicesGradientsAndHostBuffersClipAsOne) {
  const TensorTable table = make_table();
  TensorTable head_table;
  head_table.add("w", {5, 3});
  head_table.add("b", {3});
  for (const float max_norm : {0.5f, 0.f, 1e6f, -1.f}) {
    SCOPED_TRACE(max_norm);
    FlatBuffer enc(table), head(head_table);
    fill(enc, 11, 0.01f);
    fill(head, 12, 0.5f);
    if (max_norm < 0) head.get("w")[4] = std::numeric_limits<float>::quiet_NaN();
    const auto device = make_host_optimizer_device(table, AdamWConfig{});
    std::memcpy(device->grads(), enc.data(), size_t(enc.size()) * sizeof(float));
    FlatBuffer head_on_host = head;
    FlatBuffer* const both[] = {&enc, &head};
    const float want = clip_grad_norm(both, max_norm);
    FlatBuffer* const host[] = {&head_on_host};
    const float got = clip_grad_norm(*device, host, max_norm);
    EXPECT_EQ(std::memcmp(&got, &want, sizeof(float)), 0) << got << " vs " << want;
    EXPECT_EQ(std::memcmp(device->grads(), enc.data(), size_t(enc.size()) * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(head_on_host.data(), head.data(), size_t(head.size()) * sizeof(float)),
              0);
  }
}

TEST(GradClip, LeavesSmallOrUnboundedGradsAlone) {
  const TensorTable table = make_table();
  FlatBuffer g(table), copy(table);
  fill(g, 3, 0.01f);
  std::memcpy(copy.data(), g.data(), size_t(g.size()) * sizeof(float));
  const float norm = clip_grad_norm(g, 1e6f);
  EXPECT_GT(norm, 0.f);
  EXPECT_EQ(clip_grad_norm(g, 0.f), norm);  // max_norm 0: measure only
  EXPECT_EQ(std::memcmp(copy.data(), g.data(), size_t(g.size()) * sizeof(float)), 0);
}

TEST(GradClip, NonFiniteNormIsReportedAndGradsUntouched) {
  const TensorTable table = make_table();
  FlatBuffer g(table);
  fill(g, 4, 1.f);
  g.get("b")[3] = std::numeric_limits<float>::infinity();
  const float b0 = g.get("b")[0];
  EXPECT_TRUE(std::isinf(clip_grad_norm(g, 1.f)));
  EXPECT_EQ(g.get("b")[0], b0);
  g.get("b")[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(clip_grad_norm(g, 1.f)));
}

TEST(GradClip, BitwiseIdenticalForAnyThreadCount) {
  const TensorTable table = make_table();
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    FlatBuffer g(table);
    fill(g, 5, 0.03f);
    const float norm = clip_grad_norm(g, 1.f);
    std::vector<float> out(g.data(), g.data() + g.size());
    out.push_back(norm);
    return out;
  };
  const int saved = omp_get_max_threads();
  const auto one = run(1), two = run(2), three = run(3);
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
}
