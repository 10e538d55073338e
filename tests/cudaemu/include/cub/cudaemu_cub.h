// cudaemu: the parts of CUB that ecmoe's CUDA backend uses. Block collectives gather every
// thread's value in the block's scratch and combine them in thread order once (a TempStorage
// reused with no __syncthreads since its last collective stops the program, as CUB forbids it); the
// device-wide radix sorts are stable sorts on the host, queued on the stream like any GPU work.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>

namespace cub {

template <typename T, int kBlockThreads>
class BlockScan {
 public:
  struct TempStorage {
    unsigned char byte;
  };
  explicit BlockScan(TempStorage& temp) : temp_(&temp) {}

  void ExclusiveSum(T input, T& output) {
    T total;
    ExclusiveSum(input, output, total);
  }
  void ExclusiveSum(T input, T& output, T& block_aggregate) {
    scan(input, output, block_aggregate, false);
  }
  void InclusiveSum(T input, T& output) {
    T total;
    scan(input, output, total, true);
  }
  void InclusiveSum(T input, T& output, T& block_aggregate) {
    scan(input, output, block_aggregate, true);
  }

 private:
  void scan(T input, T& output, T& total, bool inclusive) {
    const int n = ::cudaemu::check_collective_threads(kBlockThreads, "BlockScan");
    T* slots = static_cast<T*>(::cudaemu::block_scratch(sizeof(T) * (2 * size_t(n) + 1)));
    const int me = ::cudaemu::linear_thread();
    slots[me] = input;
    const std::function<void()> once = [slots, n, temp = temp_] {
      ::cudaemu::collective_storage_used(temp, "BlockScan");
      T acc{};
      for (int i = 0; i < n; ++i) {
        slots[n + i] = acc;
        acc = acc + slots[i];
      }
      slots[2 * n] = acc;
    };
    ::cudaemu::sync_block(&once);
    output = inclusive ? T(slots[n + me] + input) : slots[n + me];
    total = slots[2 * n];
    ::cudaemu::sync_block();  // the scratch is free again
  }
  const TempStorage* temp_;
};

template <typename T, int kBlockThreads>
class BlockReduce {
 public:
  struct TempStorage {
    unsigned char byte;
  };
  explicit BlockReduce(TempStorage& temp) : temp_(&temp) {}

  // The result is defined in thread 0 only (the others get 0xff bytes, as undefined).
  T Sum(T input) {
    return Reduce(input, [](T a, T b) { return a + b; });
  }
  T Sum(T input, int num_valid) {
    return reduce(input, num_valid, [](T a, T b) { return a + b; });
  }
  template <typename Op>
  T Reduce(T input, Op op) {
    return reduce(input, ::cudaemu::block_threads(), op);
  }
  template <typename Op>
  T Reduce(T input, Op op, int num_valid) {
    return reduce(input, num_valid, op);
  }

 private:
  template <typename Op>
  T reduce(T input, int valid, Op op) {
    const int n = ::cudaemu::check_collective_threads(kBlockThreads, "BlockReduce");
    T* slots = static_cast<T*>(::cudaemu::block_scratch(sizeof(T) * (size_t(n) + 1)));
    slots[::cudaemu::linear_thread()] = input;
    const std::function<void()> once = [slots, n, valid, op, temp = temp_] {
      ::cudaemu::collective_storage_used(temp, "BlockReduce");
      T acc = slots[0];
      for (int i = 1; i < valid && i < n; ++i) acc = op(acc, slots[i]);
      slots[n] = acc;
    };
    ::cudaemu::sync_block(&once);
    const T out =
        ::cudaemu::linear_thread() == 0 ? slots[n] : ::cudaemu::from_bits<T>(~uint64_t(0));
    ::cudaemu::sync_block();
    return out;
  }
  const TempStorage* temp_;
};

namespace cudaemu_detail {

// CUB's outputs may not overlap its inputs "in any way": stops the program if they do.
void check_disjoint(const void* out, size_t out_bytes, const void* in, size_t in_bytes);

template <typename K, typename V>
void check_outputs(const K* keys_in, K* keys_out, const V* values_in, V* values_out, int64_t n) {
  const size_t kb = size_t(n) * sizeof(K), vb = size_t(n) * sizeof(V);
  check_disjoint(keys_out, kb, keys_in, kb);
  check_disjoint(keys_out, kb, values_in, vb);
  check_disjoint(values_out, vb, keys_in, kb);
  check_disjoint(values_out, vb, values_in, vb);
  check_disjoint(keys_out, kb, values_out, vb);
}

// The sort key of a value as CUB orders it: unsigned bits, negative values below positive ones,
// -0.0 equal to +0.0; then bits [begin_bit, end_bit).
template <typename K>
uint64_t radix_key(K k, int begin_bit, int end_bit) {
  static_assert(std::is_arithmetic_v<K> && sizeof(K) <= 8);
  uint64_t u = ::cudaemu::to_bits(k);
  const int bits = int(sizeof(K)) * 8;
  const uint64_t sign = uint64_t(1) << (bits - 1);
  const uint64_t all = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
  if constexpr (std::is_floating_point_v<K>) {
    if (u == sign) u = 0;  // -0.0
    u = (u & sign) ? (~u & all) : (u | sign);
  } else if constexpr (std::is_signed_v<K>) {
    u ^= sign;
  }
  const int width = end_bit - begin_bit;
  const uint64_t mask = width >= 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1;
  return (u >> begin_bit) & mask;
}

// Sorts items [begin, end) of (keys_in, values_in) into (keys_out, values_out), stably.
void sort_pairs(size_t key_bytes, size_t value_bytes, const void* keys_in, void* keys_out,
                const void* values_in, void* values_out, int64_t begin, int64_t end,
                const std::function<uint64_t(const void*)>& key, bool descending);
void enqueue(cudaStream_t stream, std::function<void()> op);
cudaError_t check_temp(void* temp, size_t temp_bytes);
constexpr size_t kTempBytes = 256;

// Where segment s lies: all n items (DeviceRadixSort), or [begin[s], end[s]) read from device
// memory when the sort runs (DeviceSegmentedRadixSort).
struct WholeRange {
  int64_t n;
  std::pair<int64_t, int64_t> operator()(int) const { return {0, n}; }
};
template <typename Offsets>
struct Segments {
  Offsets begin, end;
  std::pair<int64_t, int64_t> operator()(int s) const {
    return {int64_t(begin[s]), int64_t(end[s])};
  }
};

// Both radix sorts: the temporary-storage query, CUB's checks, then each segment sorted stably by
// its radix key when the stream runs.
template <typename K, typename V, typename SegmentOf>
cudaError_t sort(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                 V* values_out, int64_t n, int segments, SegmentOf segment_of, int begin_bit,
                 int end_bit, cudaStream_t stream, bool descending) {
  if (temp == nullptr) {
    temp_bytes = kTempBytes;
    return cudaSuccess;
  }
  if (const cudaError_t e = check_temp(temp, temp_bytes); e != cudaSuccess) return e;
  check_outputs(keys_in, keys_out, values_in, values_out, n);
  enqueue(stream, [=] {
    for (int s = 0; s < segments; ++s) {
      const auto [begin, end] = segment_of(s);
      sort_pairs(
          sizeof(K), sizeof(V), keys_in, keys_out, values_in, values_out, begin, end,
          [=](const void* k) { return radix_key(*static_cast<const K*>(k), begin_bit, end_bit); },
          descending);
    }
  });
  return cudaSuccess;
}

}  // namespace cudaemu_detail

struct DeviceRadixSort {
  template <typename K, typename V, typename NumItems>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, NumItems num_items,
                               int begin_bit = 0, int end_bit = sizeof(K) * 8,
                               cudaStream_t stream = nullptr) {
    return cudaemu_detail::sort(
        temp, temp_bytes, keys_in, keys_out, values_in, values_out, int64_t(num_items), 1,
        cudaemu_detail::WholeRange{int64_t(num_items)}, begin_bit, end_bit, stream, false);
  }
  template <typename K, typename V, typename NumItems>
  static cudaError_t SortPairsDescending(void* temp, size_t& temp_bytes, const K* keys_in,
                                         K* keys_out, const V* values_in, V* values_out,
                                         NumItems num_items, int begin_bit = 0,
                                         int end_bit = sizeof(K) * 8,
                                         cudaStream_t stream = nullptr) {
    return cudaemu_detail::sort(
        temp, temp_bytes, keys_in, keys_out, values_in, values_out, int64_t(num_items), 1,
        cudaemu_detail::WholeRange{int64_t(num_items)}, begin_bit, end_bit, stream, true);
  }
};

struct DeviceSegmentedRadixSort {
  template <typename K, typename V, typename NumItems, typename Offsets>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, NumItems num_items,
                               int num_segments, Offsets begin_offsets, Offsets end_offsets,
                               int begin_bit = 0, int end_bit = sizeof(K) * 8,
                               cudaStream_t stream = nullptr) {
    return cudaemu_detail::sort(temp, temp_bytes, keys_in, keys_out, values_in, values_out,
                                int64_t(num_items), num_segments,
                                cudaemu_detail::Segments<Offsets>{begin_offsets, end_offsets},
                                begin_bit, end_bit, stream, false);
  }
  template <typename K, typename V, typename NumItems, typename Offsets>
  static cudaError_t SortPairsDescending(void* temp, size_t& temp_bytes, const K* keys_in,
                                         K* keys_out, const V* values_in, V* values_out,
                                         NumItems num_items, int num_segments,
                                         Offsets begin_offsets, Offsets end_offsets,
                                         int begin_bit = 0, int end_bit = sizeof(K) * 8,
                                         cudaStream_t stream = nullptr) {
    return cudaemu_detail::sort(temp, temp_bytes, keys_in, keys_out, values_in, values_out,
                                int64_t(num_items), num_segments,
                                cudaemu_detail::Segments<Offsets>{begin_offsets, end_offsets},
                                begin_bit, end_bit, stream, true);
  }
};

}  // namespace cub
