// The device-wide radix sorts of cub/cudaemu_cub.h: stable sorts by the radix key, queued.
#include <cub/cudaemu_cub.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
#include <utility>
#include <vector>

#include "internal.h"

namespace cub::cudaemu_detail {

void sort_pairs(size_t key_bytes, size_t value_bytes, const void* keys_in, void* keys_out,
                const void* values_in, void* values_out, int64_t begin, int64_t end,
                const std::function<uint64_t(const void*)>& key, bool descending) {
  if (end <= begin) return;
  const auto* kin = static_cast<const char*>(keys_in);
  const auto* vin = static_cast<const char*>(values_in);
  std::vector<int64_t> order(size_t(end - begin));
  std::iota(order.begin(), order.end(), begin);
  std::vector<uint64_t> keys(order.size());
  for (size_t i = 0; i < order.size(); ++i) keys[i] = key(kin + order[i] * int64_t(key_bytes));
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    const uint64_t kx = keys[size_t(x - begin)], ky = keys[size_t(y - begin)];
    return descending ? kx > ky : kx < ky;
  });
  std::vector<char> k_out(order.size() * key_bytes), v_out(order.size() * value_bytes);
  for (size_t r = 0; r < order.size(); ++r) {
    std::memcpy(&k_out[r * key_bytes], kin + order[r] * int64_t(key_bytes), key_bytes);
    std::memcpy(&v_out[r * value_bytes], vin + order[r] * int64_t(value_bytes), value_bytes);
  }
  std::memcpy(static_cast<char*>(keys_out) + begin * int64_t(key_bytes), k_out.data(),
              k_out.size());
  std::memcpy(static_cast<char*>(values_out) + begin * int64_t(value_bytes), v_out.data(),
              v_out.size());
}

void enqueue(cudaStream_t stream, std::function<void()> op) {
  std::lock_guard lock(::cudaemu::api_lock());
  ++::cudaemu::counts().sorts;
  ::cudaemu::enqueue(stream, std::move(op), "a CUB radix sort");
}

void check_disjoint(const void* out, size_t out_bytes, const void* in, size_t in_bytes) {
  const auto* o = static_cast<const char*>(out);
  const auto* i = static_cast<const char*>(in);
  if (out_bytes > 0 && in_bytes > 0 && o < i + in_bytes && i < o + out_bytes)
    ::cudaemu::fatal("a CUB radix sort's output overlaps an input (CUB forbids it)");
}

cudaError_t check_temp(void* temp, size_t temp_bytes) {
  if (temp_bytes < kTempBytes || !::cudaemu::is_device(temp) ||
      !::cudaemu::is_device(static_cast<char*>(temp) + kTempBytes - 1))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace cub::cudaemu_detail
