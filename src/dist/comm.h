// The communicator the engine runs on: either one process (no MPI, every collective a copy) or
// MPI_COMM_WORLD when launched by mpirun. Every reduction sums in rank order 0..P-1, so a result
// is the same bits on every rank and in every run (MPI's own reductions promise neither).
// Shapes: "rows" are float rows of `width` floats; per-rank arrays have P entries.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ecmoe::dist {

// Time and volume spent in the expert exchange, accumulated by the caller's communicator.
struct ExchangeCounters {
  double seconds = 0;      // inside all-to-all calls (counts and rows)
  int64_t bytes_sent = 0;  // row bytes sent to other ranks (rows kept on this rank excluded)
  int64_t calls = 0;
};

class Comm {
 public:
  static Comm single();  // one process, no MPI
  // MPI_COMM_WORLD; MPI must be initialised (MpiSession). In a build without MPI: single().
  static Comm world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool parallel() const { return size_ > 1; }

  // Deterministic sums, result on every rank: the same bits everywhere.
  void allreduce_sum(std::span<float> data) const;
  void allreduce_sum(std::span<double> data) const;
  void allreduce_sum(std::span<int64_t> data) const;
  double allreduce_max(double value) const;
  // Every rank's value, in rank order.
  std::vector<uint64_t> allgather(uint64_t value) const;
  // Every rank's values concatenated in rank order (ranks may give different counts).
  std::vector<float> allgatherv(std::span<const float> mine) const;
  std::vector<int32_t> allgatherv(std::span<const int32_t> mine) const;
  // Rank 0 receives every rank's floats in rank order, its own first, through `take`, in pieces
  // of at most kGatherPieceFloats (so it never holds another rank's whole part); the other ranks
  // send theirs and `take` is not called there. Every rank calls it; counts may differ.
  static constexpr int64_t kGatherPieceFloats = int64_t(1) << 24;  // 64 MiB
  void gather_to_root(std::span<const float> mine,
                      const std::function<void(std::span<const float>)>& take) const;
  // Rank 0's bytes to every rank (data resized on the others).
  void broadcast(std::string& data) const;
  // Rank 0's `root_value` on every rank (the others' are ignored), so that all ranks take the
  // same branch of a decision only rank 0 can make (its files, its clock).
  bool root_decides(bool root_value) const;
  void barrier() const;

  // send [P · per_rank] ints, block r to rank r; returns [P · per_rank], block r from rank r.
  std::vector<int> alltoall(std::span<const int> send, int per_rank) const;
  // Rows: send_rows[r] consecutive rows of `send` go to rank r; recv gets recv_rows[r] rows from
  // each rank r in rank order (recv sized sum(recv_rows) · width).
  void alltoallv(const float* send, std::span<const int> send_rows, float* recv,
                 std::span<const int> recv_rows, int width) const;

  // Ends the whole job: prints "ecmoe: error (rank r): message" and, under MPI, MPI_Abort, so no
  // rank is left waiting in a collective.
  [[noreturn]] void abort(const std::string& message) const;
  // Aborts on every rank unless all ranks pass the same value; `what` names it in the error.
  void check_same(uint64_t value, const std::string& what) const;

  ExchangeCounters& counters() const { return counters_; }

 private:
  Comm(int rank, int size, bool mpi) : rank_(rank), size_(size), mpi_(mpi) {}
  int rank_ = 0;
  int size_ = 1;
  bool mpi_ = false;
  mutable ExchangeCounters counters_;
};

// Initialises MPI when the process was started by mpirun (Open MPI's environment says so) and
// finalises it at scope exit; otherwise does nothing, so the engine runs without mpirun. In a
// build without MPI, a launch by mpirun is an error (ecmoe::Error, one line).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  const Comm& comm() const { return comm_; }

 private:
  bool initialised_ = false;
  Comm comm_ = Comm::single();
};

// True when the environment shows an mpirun launch.
bool launched_by_mpirun();

// False when built with -DECMOE_MPI=OFF (no MPI at all: one process only).
bool built_with_mpi();

// FNV-1a of bytes, for check_same on configs and versions.
uint64_t fingerprint(const std::string& bytes);

}  // namespace ecmoe::dist
