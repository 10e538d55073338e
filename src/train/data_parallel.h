// Data parallelism over MPI ranks (docs/architecture.md, "Expert and data parallelism"): every
// rank holds the replicated parameters (everything but the experts) and their optimizer state,
// and its own experts' (Transformer with a communicator); a step's global batch of B sequences
// is cut into P slices of B/P, rank r taking sequences [r·B/P, (r+1)·B/P); after backward the
// replicated gradients are summed over ranks (in rank order, deterministically) and every
// gradient is divided by P. An expert's owner ran it on every rank's rows, so it already holds
// that expert's summed gradient: expert gradients never travel. The replicated parameters stay
// identical on every rank; a checkpoint gathers the experts (save_checkpoint).
#pragma once
#include "core/tensor_table.h"
#include "dist/comm.h"
#include "model/transformer.h"

namespace ecmoe {

// Sequences [r·B/P, (r+1)·B/P) of a batch of B sequences; B must be divisible by P.
Batch slice_batch(const Batch& batch, const dist::Comm& comm);
// Checks that a batch size of `batch_size` sequences (named `what`) splits over the ranks.
void check_batch_splits(int batch_size, const dist::Comm& comm, const char* what);

// Replicated tensors: grads <- (sum over ranks of grads) / P, the same bits on every rank.
// Expert shards (TensorSpec::sharded): grads <- grads / P, no communication.
void average_gradients(FlatBuffer& grads, const dist::Comm& comm);

// A rank's forward result made global: loss, lm_loss and aux averaged over ranks (what the
// averaged gradient differentiates), counted summed, routing statistics reduced.
ForwardResult reduce_forward_result(const ForwardResult& f, const dist::Comm& comm);

}  // namespace ecmoe
