// The nn kernels against PyTorch 1.13 (float64) on the inputs stored by
// tools/make_nn_fixtures.py in tests/fixtures/nn_torch_reference.safetensors.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nn/attention.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "nn_test_util.h"

using namespace ecmoe::nn;
using namespace ecmoe::nn::test;

namespace {

// A minimal safetensors reader for this test only (F32 and I32 tensors).
class Fixture {
 public:
  explicit Fixture(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    uint64_t header_len = 0;
    in.read(reinterpret_cast<char*>(&header_len), 8);  // little-endian, as is this machine
    std::string header(header_len, '\0');
    in.read(header.data(), std::streamsize(header_len));
    const std::vector<char> data((std::istreambuf_iterator<char>(in)), {});
    const auto index = nlohmann::json::parse(header);  // named: items() must not outlive it
    for (const auto& [name, info] : index.items()) {
      const size_t begin = info["data_offsets"][0], end = info["data_offsets"][1];
      if (end > data.size() || (end - begin) % 4) throw std::runtime_error("bad tensor " + name);
      Tensor t{info["dtype"], info["shape"].get<std::vector<int64_t>>(),
               std::vector<char>(data.begin() + begin, data.begin() + end)};
      tensors_.emplace(name, std::move(t));
    }
  }
  std::vector<float> floats(const std::string& name) const { return get<float>(name, "F32"); }
  std::vector<int> ints(const std::string& name) const { return get<int32_t>(name, "I32"); }
  std::vector<int64_t> shape(const std::string& name) const { return find(name).shape; }

 private:
  struct Tensor {
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<char> bytes;
  };
  const Tensor& find(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::runtime_error("fixture has no tensor " + name);
    return it->second;
  }
  template <typename T>
  std::vector<T> get(const std::string& name, const std::string& dtype) const {
    const Tensor& t = find(name);
    if (t.dtype != dtype) throw std::runtime_error(name + " is " + t.dtype + ", not " + dtype);
    std::vector<T> v(t.bytes.size() / sizeof(T));
    std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
    return v;
  }
  std::map<std::string, Tensor> tensors_;
};

const Fixture& fixture() {
  static const Fixture f(std::string(ECMOE_FIXTURE_DIR) + "/nn_torch_reference.safetensors");
  return f;
}

// fp32 kernels against float64 PyTorch results rounded to fp32: a few fp32 roundings of O(1)
// values over sums of at most ten terms.
constexpr double kRel = 1e-5, kAbs = 1e-5;

}  // namespace

TEST(TorchParity, LayerNorm) {
  const auto& f = fixture();
  const auto x = f.floats("ln.x"), gain = f.floats("ln.gain"), bias = f.floats("ln.bias"),
             dout = f.floats("ln.dout");
  const int rows = int(f.shape("ln.x")[0]), dim = int(f.shape("ln.x")[1]);
  std::vector<float> out(x.size()), mean(rows), rstd(rows), dx(x.size()), dgain(dim), dbias(dim);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), rows,
                    dim);
  layernorm_backward(dx.data(), dgain.data(), dbias.data(), dout.data(), x.data(), gain.data(),
                     mean.data(), rstd.data(), rows, dim);
  EXPECT_TRUE(all_close(out, f.floats("ln.out"), kRel, kAbs));
  EXPECT_TRUE(all_close(dx, f.floats("ln.dx"), kRel, kAbs));
  EXPECT_TRUE(all_close(dgain, f.floats("ln.dgain"), kRel, kAbs));
  EXPECT_TRUE(all_close(dbias, f.floats("ln.dbias"), kRel, kAbs));
}

TEST(TorchParity, Linear) {
  const auto& f = fixture();
  const auto x = f.floats("lin.x"), w = f.floats("lin.w"), b = f.floats("lin.b"),
             dout = f.floats("lin.dout");
  const LinearShape s{int(f.shape("lin.x")[0]), int(f.shape("lin.w")[0]), int(f.shape("lin.w")[1])};
  std::vector<float> out(dout.size()), dx(x.size()), dw(w.size()), db(b.size());
  linear_forward(out.data(), x.data(), w.data(), b.data(), s);
  linear_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), s);
  EXPECT_TRUE(all_close(out, f.floats("lin.out"), kRel, kAbs));
  EXPECT_TRUE(all_close(dx, f.floats("lin.dx"), kRel, kAbs));
  EXPECT_TRUE(all_close(dw, f.floats("lin.dw"), kRel, kAbs));
  EXPECT_TRUE(all_close(db, f.floats("lin.db"), kRel, kAbs));
}

TEST(TorchParity, AttentionCausalAndBidirectionalWithAndWithoutPadding) {
  const auto& f = fixture();
  const auto valid_len = f.ints("attn.valid_len");
  for (bool causal : {false, true})
    for (bool padded : {false, true}) {
      const std::string name =
          std::string("attn_") + (causal ? "causal" : "bidir") + (padded ? "_padded" : "");
      SCOPED_TRACE(name);
      const auto qkv = f.floats(name + ".qkv"), dout = f.floats(name + ".dout");
      const auto shape = f.shape(name + ".qkv");  // [B, T, 3·d] with H = 2 heads of 3
      const AttentionConfig c{int(shape[0]), int(shape[1]), 2, int(shape[2]) / 6, causal};
      ASSERT_EQ(c.model_dim() * 3, shape[2]);
      std::vector<float> out(dout.size()),
          probs(size_t(c.batch) * c.n_heads * c.seq_len * c.seq_len), dqkv(qkv.size());
      const int* lengths = padded ? valid_len.data() : nullptr;
      attention_forward(out.data(), probs.data(), qkv.data(), c, lengths);
      attention_backward(dqkv.data(), dout.data(), qkv.data(), probs.data(), c, lengths);
      EXPECT_TRUE(all_close(out, f.floats(name + ".out"), kRel, kAbs));
      EXPECT_TRUE(all_close(dqkv, f.floats(name + ".dqkv"), kRel, kAbs));
    }
}

TEST(TorchParity, Embedding) {
  const auto& f = fixture();
  const auto tokens = f.ints("emb.tokens");
  const auto table = f.floats("emb.table"), pos = f.floats("emb.pos"), dout = f.floats("emb.dout");
  const EmbeddingConfig c{int(f.shape("emb.tokens")[0]), int(f.shape("emb.tokens")[1]),
                          int(f.shape("emb.table")[1]), int(f.shape("emb.table")[0])};
  std::vector<float> out(dout.size()), dtable(table.size()), dpos(pos.size());
  embedding_forward(out.data(), tokens.data(), table.data(), pos.data(), c);
  embedding_backward(dtable.data(), dpos.data(), dout.data(), tokens.data(), c);
  EXPECT_TRUE(all_close(out, f.floats("emb.out"), kRel, kAbs));
  EXPECT_TRUE(all_close(dtable, f.floats("emb.dtable"), kRel, kAbs));
  EXPECT_TRUE(all_close(dpos, f.floats("emb.dpos"), kRel, kAbs));
}

TEST(TorchParity, CrossEntropyWithIgnoreIndex) {
  const auto& f = fixture();
  const auto logits = f.floats("ce.logits");
  const auto targets = f.ints("ce.targets");
  const int rows = int(f.shape("ce.logits")[0]), vocab = int(f.shape("ce.logits")[1]);
  std::vector<float> lse(rows), dlogits(logits.size());
  const auto result = cross_entropy_forward(lse.data(), logits.data(), targets.data(), rows, vocab);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), result.count,
                         1.f, rows, vocab);
  EXPECT_EQ(result.count, 4);
  EXPECT_NEAR(result.loss, f.floats("ce.loss")[0], kRel * std::abs(f.floats("ce.loss")[0]));
  EXPECT_TRUE(all_close(dlogits, f.floats("ce.dlogits"), kRel, kAbs));
}
