// How far a buffer that must grow grows: exactly to what it needs the first time; after that to at
// least an eighth more than it had, so that sizes that vary from batch to batch (the counted rows
// of a masked LM's head) settle after a few steps instead of reallocating at every new maximum
// (on a GPU, freeing memory waits for the whole device). nn/buffer.h and cuda/device_buffer.h.
#pragma once
#include <algorithm>

namespace ecmoe {

// The new capacity of a buffer of `capacity` (0: none yet) that must hold needed > capacity.
template <typename T>
T grown_capacity(T capacity, T needed) {
  return capacity > 0 ? std::max(needed, capacity + capacity / 8) : needed;
}

}  // namespace ecmoe
