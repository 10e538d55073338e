// Host-to-device copies that never make the host wait for the device. cudaMemcpyAsync from
// ordinary (pageable) host memory may synchronise with the stream before it stages the bytes,
// so an upload in the middle of a step (a batch's token ids, a routing plan's offsets) would let
// the device run dry while the host waits. Here the bytes are first copied into pinned host
// memory, and the device copies from there on the stream: the caller may reuse its buffer as
// soon as upload_async returns, and the host runs ahead. Pinned slots are used in turn; a slot
// is written again only once the device has finished reading it (an event), and where it has not
// yet, a new slot joins the ring instead of the host waiting (a ring per power-of-two slot size
// from 64 KiB, up to 64 MiB each). Copies above kStagedBytesMax (the parameters of a run, once)
// go directly.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace ecmoe::cuda {

inline constexpr std::size_t kStagedBytesMax = std::size_t(8) << 20;

// dst (device) <- src (host), ordered on `stream`.
void upload_async(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);

}  // namespace ecmoe::cuda
