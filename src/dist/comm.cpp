// ECMOE_HAVE_MPI (CMake's ECMOE_MPI, on by default): without it there is no <mpi.h>, every Comm
// is single() (mpi_ is never true, so the collectives' MPI branches are never taken: each ends in
// no_mpi()), and a launch by mpirun is refused with one line.
#include "dist/comm.h"

#ifndef ECMOE_HAVE_MPI
#define ECMOE_HAVE_MPI 0
#endif
#if ECMOE_HAVE_MPI
#include <mpi.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fnv1a.h"
#include "core/timer.h"

namespace ecmoe::dist {

namespace {

#if ECMOE_HAVE_MPI
void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  fail(call, " failed: ", std::string(text, len));
}

// Sum in rank order by a reduce-scatter of P chunks (rank r sums chunk r over ranks 0..P-1)
// followed by an all-gather: every element is added in the same order on the rank that owns it,
// and all ranks receive that one result.
template <typename T>
void ordered_allreduce(std::span<T> data, int P, MPI_Datatype type) {
  const int64_t n = int64_t(data.size());
  const int64_t chunk = (n + P - 1) / P;
  ECMOE_CHECK(chunk <= (int64_t(1) << 30), "allreduce: buffer too large");
  std::vector<int> counts(P), displs(P);
  for (int r = 0; r < P; ++r) {
    const int64_t begin = std::min(n, r * chunk), end = std::min(n, (r + 1) * chunk);
    counts[r] = int(end - begin);
    displs[r] = int(begin);
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int mine = counts[rank];
  std::vector<T> gathered(size_t(mine) * P);
  std::vector<int> recv_counts(P, mine), recv_displs(P);
  for (int r = 0; r < P; ++r) recv_displs[r] = r * mine;
  check_mpi(MPI_Alltoallv(data.data(), counts.data(), displs.data(), type, gathered.data(),
                          recv_counts.data(), recv_displs.data(), type, MPI_COMM_WORLD),
            "MPI_Alltoallv");
  std::vector<T> sum(gathered.begin(), gathered.begin() + mine);
  for (int r = 1; r < P; ++r)
    for (int j = 0; j < mine; ++j) sum[j] += gathered[size_t(r) * mine + j];
  check_mpi(MPI_Allgatherv(sum.data(), mine, type, data.data(), counts.data(), displs.data(), type,
                           MPI_COMM_WORLD),
            "MPI_Allgatherv");
}

template <typename T>
std::vector<T> allgatherv_impl(std::span<const T> mine, int P, MPI_Datatype type) {
  ECMOE_CHECK(mine.size() < (size_t(1) << 31), "allgatherv: too many values");
  const int n = int(mine.size());
  std::vector<int> counts(P), displs(P);
  check_mpi(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD),
            "MPI_Allgather");
  int64_t total = 0;
  for (int r = 0; r < P; ++r) {
    displs[r] = int(total);
    total += counts[r];
    ECMOE_CHECK(total < (int64_t(1) << 31), "allgatherv: too many values");
  }
  std::vector<T> out(total);
  check_mpi(MPI_Allgatherv(mine.data(), n, type, out.data(), counts.data(), displs.data(), type,
                           MPI_COMM_WORLD),
            "MPI_Allgatherv");
  return out;
}
#else
// Reached only by a bug: without MPI no Comm has mpi_ set.
[[noreturn]] void no_mpi(const char* call) {
  fail(call, ": this ecmoe was built without MPI (-DECMOE_MPI=OFF)");
}
#endif

}  // namespace

bool built_with_mpi() { return ECMOE_HAVE_MPI; }

Comm Comm::single() { return Comm(0, 1, false); }

Comm Comm::world() {
#if !ECMOE_HAVE_MPI
  return single();  // the whole world is this process
#else
  int initialised = 0;
  MPI_Initialized(&initialised);
  ECMOE_CHECK(initialised, "Comm::world: MPI is not initialised");
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return Comm(rank, size, true);
#endif
}

void Comm::allreduce_sum(std::span<float> data) const {
  if (!mpi_ || size_ == 1) return;
#if ECMOE_HAVE_MPI
  ordered_allreduce(data, size_, MPI_FLOAT);
#else
  (void)data;
  no_mpi("allreduce_sum");
#endif
}
void Comm::allreduce_sum(std::span<double> data) const {
  if (!mpi_ || size_ == 1) return;
#if ECMOE_HAVE_MPI
  ordered_allreduce(data, size_, MPI_DOUBLE);
#else
  (void)data;
  no_mpi("allreduce_sum");
#endif
}
void Comm::allreduce_sum(std::span<int64_t> data) const {
  if (!mpi_ || size_ == 1) return;
#if ECMOE_HAVE_MPI
  ordered_allreduce(data, size_, MPI_INT64_T);
#else
  (void)data;
  no_mpi("allreduce_sum");
#endif
}

double Comm::allreduce_max(double value) const {
  if (!mpi_ || size_ == 1) return value;
#if ECMOE_HAVE_MPI
  double out = 0;
  check_mpi(MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;  // max is exact, so MPI's order does not matter
#else
  no_mpi("allreduce_max");
#endif
}

std::vector<uint64_t> Comm::allgather(uint64_t value) const {
  std::vector<uint64_t> out(size_, value);
  if (!mpi_ || size_ == 1) return out;
#if ECMOE_HAVE_MPI
  check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
            "MPI_Allgather");
  return out;
#else
  no_mpi("allgather");
#endif
}

std::vector<float> Comm::allgatherv(std::span<const float> mine) const {
  if (!mpi_ || size_ == 1) return std::vector<float>(mine.begin(), mine.end());
#if ECMOE_HAVE_MPI
  return allgatherv_impl(mine, size_, MPI_FLOAT);
#else
  no_mpi("allgatherv");
#endif
}

std::vector<int32_t> Comm::allgatherv(std::span<const int32_t> mine) const {
  if (!mpi_ || size_ == 1) return std::vector<int32_t>(mine.begin(), mine.end());
#if ECMOE_HAVE_MPI
  return allgatherv_impl(mine, size_, MPI_INT32_T);
#else
  no_mpi("allgatherv");
#endif
}

void Comm::broadcast(std::string& data) const {
  if (!mpi_ || size_ == 1) return;
#if ECMOE_HAVE_MPI
  uint64_t n = data.size();
  check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  ECMOE_CHECK(n <= (uint64_t(1) << 31) - 1, "broadcast: ", n, " bytes is too large");
  data.resize(n);
  check_mpi(MPI_Bcast(data.data(), int(n), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
#else
  (void)data;
  no_mpi("broadcast");
#endif
}

bool Comm::root_decides(bool root_value) const {
  std::string answer = root_value ? "1" : "0";
  broadcast(answer);
  return answer == "1";
}

void Comm::gather_to_root(std::span<const float> mine,
                          const std::function<void(std::span<const float>)>& take) const {
  if (!mpi_ || size_ == 1) {
    take(mine);
    return;
  }
#if ECMOE_HAVE_MPI
  constexpr int kCountTag = 71, kPieceTag = 72;
  if (rank_ != 0) {
    const int64_t n = int64_t(mine.size());
    check_mpi(MPI_Send(&n, 1, MPI_INT64_T, 0, kCountTag, MPI_COMM_WORLD), "MPI_Send");
    for (int64_t at = 0; at < n; at += kGatherPieceFloats) {
      const int piece = int(std::min(kGatherPieceFloats, n - at));
      check_mpi(MPI_Send(mine.data() + at, piece, MPI_FLOAT, 0, kPieceTag, MPI_COMM_WORLD),
                "MPI_Send");
    }
    return;
  }
  take(mine);
  std::vector<float> buffer;
  for (int r = 1; r < size_; ++r) {
    int64_t n = 0;
    check_mpi(MPI_Recv(&n, 1, MPI_INT64_T, r, kCountTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "MPI_Recv");
    for (int64_t at = 0; at < n; at += kGatherPieceFloats) {
      const int piece = int(std::min(kGatherPieceFloats, n - at));
      buffer.resize(size_t(piece));
      check_mpi(MPI_Recv(buffer.data(), piece, MPI_FLOAT, r, kPieceTag, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE),
                "MPI_Recv");
      take(std::span<const float>(buffer));
    }
  }
#else
  no_mpi("gather_to_root");
#endif
}

void Comm::barrier() const {
  if (!mpi_ || size_ == 1) return;
#if ECMOE_HAVE_MPI
  check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#else
  no_mpi("barrier");
#endif
}

std::vector<int> Comm::alltoall(std::span<const int> send, int per_rank) const {
  ECMOE_CHECK(int64_t(send.size()) == int64_t(size_) * per_rank, "alltoall: ", send.size(),
              " ints for ", size_, " ranks of ", per_rank);
  std::vector<int> recv(send.begin(), send.end());
  if (!mpi_ || size_ == 1) return recv;
#if ECMOE_HAVE_MPI
  const double t0 = now_seconds();
  check_mpi(
      MPI_Alltoall(send.data(), per_rank, MPI_INT, recv.data(), per_rank, MPI_INT, MPI_COMM_WORLD),
      "MPI_Alltoall");
  counters_.seconds += now_seconds() - t0;
  return recv;
#else
  no_mpi("alltoall");
#endif
}

void Comm::alltoallv(const float* send, std::span<const int> send_rows, float* recv,
                     std::span<const int> recv_rows, int width) const {
  ECMOE_CHECK(int(send_rows.size()) == size_ && int(recv_rows.size()) == size_,
              "alltoallv: need one row count per rank");
  std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
  int64_t so = 0, ro = 0;
  for (int r = 0; r < size_; ++r) {
    const int64_t s = int64_t(send_rows[r]) * width, q = int64_t(recv_rows[r]) * width;
    ECMOE_CHECK(so + s < (int64_t(1) << 31) && ro + q < (int64_t(1) << 31),
                "alltoallv: more than 2^31 floats in one exchange");
    sc[r] = int(s), sd[r] = int(so), rc[r] = int(q), rd[r] = int(ro);
    so += s, ro += q;
    if (r != rank_) counters_.bytes_sent += s * int64_t(sizeof(float));
  }
  ++counters_.calls;
  if (!mpi_ || size_ == 1) {
    ECMOE_CHECK(so == ro, "alltoallv: one rank sends ", so, " floats but receives ", ro);
    if (so > 0) std::memcpy(recv, send, sizeof(float) * size_t(so));
    return;
  }
#if ECMOE_HAVE_MPI
  const double t0 = now_seconds();
  check_mpi(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(),
                          MPI_FLOAT, MPI_COMM_WORLD),
            "MPI_Alltoallv");
  counters_.seconds += now_seconds() - t0;
#else
  no_mpi("alltoallv");
#endif
}

void Comm::abort(const std::string& message) const {
  if (mpi_ && size_ > 1) {
    std::fprintf(stderr, "ecmoe: error (rank %d of %d): %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
#if ECMOE_HAVE_MPI
    MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  } else {
    std::fprintf(stderr, "ecmoe: error: %s\n", message.c_str());
  }
  std::exit(1);
}

void Comm::check_same(uint64_t value, const std::string& what) const {
  const std::vector<uint64_t> all = allgather(value);
  for (int r = 1; r < size_; ++r)
    if (all[r] != all[0])
      abort("ranks disagree on " + what + " (rank " + std::to_string(r) +
            " differs from rank 0); every rank must run the same build, config and data");
}

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  if (!launched_by_mpirun()) return;
#if !ECMOE_HAVE_MPI
  (void)argc, (void)argv;
  // Each rank would run alone, all writing the same files: refuse.
  fail(
      "started by mpirun, but this ecmoe was built without MPI (-DECMOE_MPI=OFF): run it "
      "without mpirun, or build it with MPI");
#else
  int provided = 0;
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  initialised_ = true;
  comm_ = Comm::world();
#endif
}

MpiSession::~MpiSession() {
#if ECMOE_HAVE_MPI
  if (initialised_) MPI_Finalize();
#endif
}

uint64_t fingerprint(const std::string& bytes) { return fnv1a64(bytes); }

}  // namespace ecmoe::dist
