// Data parallelism over MPI ranks (docs/architecture.md, "Expert and data parallelism"): every
// rank holds the whole parameter table and the same optimizer state; a step's global batch of B
// sequences is cut into P slices of B/P, rank r taking sequences [r·B/P, (r+1)·B/P); after
// backward the gradient buffers are summed (in rank order, deterministically) and divided by P.
// Expert slices a rank does not own have zero gradient there, so the sum is the owner's gradient
// and every rank ends the step with identical parameters: a checkpoint is rank 0's buffers.
#pragma once
#include "core/tensor_table.h"
#include "dist/comm.h"
#include "model/transformer.h"

namespace ecmoe {

// Sequences [r·B/P, (r+1)·B/P) of a batch of B sequences; B must be divisible by P.
Batch slice_batch(const Batch& batch, const dist::Comm& comm);
// Checks that a batch size of `batch_size` sequences (named `what`) splits over the ranks.
void check_batch_splits(int batch_size, const dist::Comm& comm, const char* what);

// grads <- (sum over ranks of grads) / P, identical on every rank.
void average_gradients(FlatBuffer& grads, const dist::Comm& comm);

// A rank's forward result made global: loss, lm_loss and aux averaged over ranks (what the
// averaged gradient differentiates), counted summed, routing statistics reduced.
ForwardResult reduce_forward_result(const ForwardResult& f, const dist::Comm& comm);

}  // namespace ecmoe
