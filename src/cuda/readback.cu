#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/readback.h"

namespace ecmoe::cuda {

namespace {

constexpr std::size_t kAlign = 16;

std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

}  // namespace

Readback::~Readback() {  // errors have nowhere to go here
  if (done_) {
    if (pending_) cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
  }
  if (host_) cudaFreeHost(host_);
}

void Readback::begin(std::size_t bytes) {
  if (unrecorded_) {  // a set left unrecorded (an error came between its adds and record)
    ECMOE_CUDA_CHECK(cudaStreamSynchronize(last_stream_));
    unrecorded_ = false;
  }
  wait();
  used_ = 0;
  if (!done_) ECMOE_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  if (bytes > capacity_) {
    if (host_) ECMOE_CUDA_CHECK(cudaFreeHost(host_));
    host_ = nullptr;
    capacity_ = 0;
    const std::size_t capacity = aligned(bytes) < 4096 ? 4096 : aligned(bytes);
    ECMOE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_), capacity));
    capacity_ = capacity;
  }
}

std::size_t Readback::add_bytes(const void* src, std::size_t bytes, cudaStream_t stream) {
  const std::size_t offset = used_;
  ECMOE_CHECK(offset + aligned(bytes) <= capacity_, "cuda readback: ", offset + aligned(bytes),
              " bytes added to a set begun with room for ", capacity_);
  if (bytes > 0)
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(host_ + offset, src, bytes, cudaMemcpyDeviceToHost, stream));
  used_ = offset + aligned(bytes);
  unrecorded_ = true;
  last_stream_ = stream;
  return offset;
}

void Readback::record(cudaStream_t stream) {
  if (!done_) ECMOE_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  ECMOE_CUDA_CHECK(cudaEventRecord(done_, stream));
  unrecorded_ = false;
  pending_ = true;
}

void Readback::wait() {
  ECMOE_CHECK(!unrecorded_, "cuda readback: copies added but not recorded");
  if (!pending_) return;
  ECMOE_CUDA_CHECK(cudaEventSynchronize(done_));
  pending_ = false;
}

}  // namespace ecmoe::cuda
