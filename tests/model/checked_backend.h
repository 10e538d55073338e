// A backend whose memory is told apart from the host's, for the device-path tests: it runs the
// CPU's ops (so results are bitwise the CPU backend's), but every pointer an op or a copy gets on
// the device side must lie in memory it allocated, or that a test said is the device's (adopt:
// what a device's optimizer allocates itself), and the host side of an upload or download must
// not. A path that hands host memory to a device op, which on a GPU is a crash or garbage, fails
// here on the CPU with the op's name.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>

#include "nn/backend.h"

namespace ecmoe::testing {

class CheckedBackend final : public nn::Backend {
 public:
  int64_t checks = 0;  // pointers checked so far (a test can see that the checks ran)

  const char* name() const override { return "checked"; }
  // [p, p + bytes) is device memory from now on, until forget(p) (before it is freed: the host
  // may reuse the addresses).
  void adopt(const void* p, std::size_t bytes) { ranges_[addr(p)] = bytes; }
  void forget(const void* p) { ranges_.erase(addr(p)); }

  void* allocate(std::size_t bytes) override {
    void* p = cpu().allocate(bytes);
    adopt(p, bytes == 0 ? 1 : bytes);
    return p;
  }
  void release(void* p) noexcept override {
    ranges_.erase(addr(p));
    cpu().release(p);
  }
  void upload(void* dst, const void* host_src, std::size_t bytes) override {
    device(dst, "upload's destination");
    host(host_src, "upload's source");
    cpu().upload(dst, host_src, bytes);
  }
  void download(void* host_dst, const void* src, std::size_t bytes) override {
    host(host_dst, "download's destination");
    device(src, "download's source");
    cpu().download(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    device(dst, "copy");
    device(src, "copy");
    cpu().copy(dst, src, bytes);
  }
  void fill(float* x, int64_t n, float value) override {
    device(x, "fill");
    cpu().fill(x, n, value);
  }
  void add_inplace(float* acc, const float* x, int64_t n) override {
    devices("add_inplace", {acc, x});
    cpu().add_inplace(acc, x, n);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    devices("gather_rows", {dst, src, rows});
    cpu().gather_rows(dst, src, rows, m, dim);
  }
  void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    devices("scatter_add_rows", {dst, src, rows});
    cpu().scatter_add_rows(dst, src, rows, m, dim);
  }
  void embedding_forward(float* out, const int* tokens, const float* token_table,
                         const float* pos_table, const nn::EmbeddingConfig& cfg) override {
    devices("embedding_forward", {out, tokens, token_table, pos_table});
    cpu().embedding_forward(out, tokens, token_table, pos_table, cfg);
  }
  void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                          const int* tokens, const nn::EmbeddingConfig& cfg) override {
    devices("embedding_backward", {dtoken_table, dpos_table, dout, tokens});
    cpu().embedding_backward(dtoken_table, dpos_table, dout, tokens, cfg);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int rows, int dim) override {
    devices("layernorm_forward", {out, mean, rstd, inp, gain, bias});
    cpu().layernorm_forward(out, mean, rstd, inp, gain, bias, rows, dim);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int rows, int dim) override {
    devices("layernorm_backward", {dinp, dgain, dbias, dout, inp, gain, mean, rstd});
    cpu().layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, dim);
  }
  int64_t linear_saved_floats(const nn::LinearShape& shape, Precision precision) const override {
    return cpu().linear_saved_floats(shape, precision);
  }
  void linear_forward(float* out, float* saved, const float* inp, const float* weight,
                      const float* bias, const nn::LinearShape& shape,
                      Precision precision) override {
    devices("linear_forward", {out, saved, inp, weight, bias});
    cpu().linear_forward(out, saved, inp, weight, bias, shape, precision);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* saved, const float* weight,
                       const nn::LinearShape& shape, Precision precision,
                       nn::GradWrite dinp_write) override {
    devices("linear_backward", {dinp, dweight, dbias, dout, inp, saved, weight});
    cpu().linear_backward(dinp, dweight, dbias, dout, inp, saved, weight, shape, precision,
                          dinp_write);
  }
  int64_t attention_saved_floats(const nn::AttentionConfig& cfg) const override {
    return cpu().attention_saved_floats(cfg);
  }
  void attention_forward(float* out, float* saved, const float* qkv, const nn::AttentionConfig& cfg,
                         const int* valid_len) override {
    devices("attention_forward", {out, saved, qkv, valid_len});
    cpu().attention_forward(out, saved, qkv, cfg, valid_len);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* saved, const nn::AttentionConfig& cfg, const int* valid_len,
                          nn::GradWrite dqkv_write) override {
    devices("attention_backward", {dqkv, dout, qkv, out, saved, valid_len});
    cpu().attention_backward(dqkv, dout, qkv, out, saved, cfg, valid_len, dqkv_write);
  }
  void attention_decode(float* out, const float* q, const float* keys, const float* values,
                        const nn::AttentionDecodeConfig& cfg) override {
    devices("attention_decode", {out, q, keys, values});
    cpu().attention_decode(out, q, keys, values, cfg);
  }
  void tied_output_forward(float* logits, const float* h, const float* table,
                           const nn::LinearShape& shape, Precision precision) override {
    devices("tied_output_forward", {logits, h, table});
    cpu().tied_output_forward(logits, h, table, shape, precision);
  }
  void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                            const float* table, const nn::LinearShape& shape,
                            Precision precision) override {
    devices("tied_output_backward", {dh, dtable, dlogits, h, table});
    cpu().tied_output_backward(dh, dtable, dlogits, h, table, shape, precision);
  }
  void cross_entropy_forward(nn::CrossEntropyResult* result, float* logsumexp, const float* logits,
                             const int* targets, int rows, int vocab) override {
    devices("cross_entropy_forward", {logsumexp, logits, targets});
    cpu().cross_entropy_forward(result, logsumexp, logits, targets, rows, vocab);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                              const int* targets, int64_t count, float dloss, int rows,
                              int vocab) override {
    devices("cross_entropy_backward", {dlogits, logits, logsumexp, targets});
    cpu().cross_entropy_backward(dlogits, logits, logsumexp, targets, count, dloss, rows, vocab);
  }

 private:
  static nn::Backend& cpu() { return nn::cpu_backend(); }
  static std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
  bool on_device(const void* p) const {
    auto it = ranges_.upper_bound(addr(p));
    if (it == ranges_.begin()) return false;
    --it;
    return addr(p) < it->first + it->second;
  }
  // nullptr is allowed everywhere (optional arguments: a bias, valid lengths).
  void device(const void* p, const char* what) {
    ++checks;
    if (p && !on_device(p))
      throw std::logic_error(std::string(what) + ": a host pointer where device memory belongs");
  }
  void host(const void* p, const char* what) {
    ++checks;
    if (p && on_device(p))
      throw std::logic_error(std::string(what) + ": device memory where the host's belongs");
  }
  void devices(const char* op, std::initializer_list<const void*> pointers) {
    for (const void* p : pointers) device(p, op);
  }
  std::map<std::uintptr_t, std::size_t> ranges_;  // start -> bytes
};

}  // namespace ecmoe::testing
