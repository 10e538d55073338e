// A training step's batch in parts: data parallelism over MPI ranks and gradient accumulation
// over micro-batches (docs/architecture.md, "Expert and data parallelism"; docs/training.md,
// "Gradient accumulation").
//
// A step's global batch of B sequences is cut into P·A equal parts of B/(P·A) consecutive
// sequences: P ranks, each running A micro-batches in turn (config grad_accum), rank r taking
// parts r·A .. r·A + A − 1, so its slice is sequences [r·B/P, (r+1)·B/P). Each part carries its
// StepShare (model/transformer.h): its first token's place in the step (the router's jitter
// noise is drawn by it, so it is the same however the step is cut), the step's count of targets
// and the number of parts. Its backward then gives the gradient of its share of the step's loss
// (its cross-entropy sum over the step's count, its auxiliary losses over the parts), and the
// parts' gradients add up to the step's: a rank's micro-batches accumulate (+=) into its
// gradients, and reduce_gradients sums the replicated ones over the ranks (in rank order,
// deterministically). Every rank holds the replicated parameters (everything but the experts)
// and their optimizer state, and its own experts' (Transformer with a communicator); an expert's
// owner ran it on every rank's rows, so it already holds that expert's gradient: expert
// gradients never travel. The replicated parameters stay identical on every rank; a checkpoint
// gathers the experts (save_checkpoint).
//
// Routing groups never span parts: where model.moe.group_size divides a part's tokens, the step
// routes exactly as one batch would, and its loss and gradient are the whole batch's but for the
// order of their sums.
#pragma once
#include <span>
#include <vector>

#include "core/tensor_table.h"
#include "dist/comm.h"
#include "model/transformer.h"

namespace ecmoe {

// This rank's micro_batches parts of a step's batch, in order, each with its StepShare. B must
// be divisible by P·micro_batches.
std::vector<Batch> step_parts(const Batch& step, const dist::Comm& comm, int micro_batches);
// This rank's slice of a batch: sequences [r·B/P, (r+1)·B/P), the step_parts of one micro-batch
// (evaluation slices its batches so).
Batch slice_batch(const Batch& batch, const dist::Comm& comm);
// Checks that a batch of `batch_size` sequences (named `what`) splits into equal parts over the
// ranks and micro_batches micro-batches on each.
void check_batch_splits(int batch_size, const dist::Comm& comm, const char* what,
                        int micro_batches = 1);

// Replicated tensors: grads <- sum over ranks of grads, the same bits on every rank. Expert shards
// (TensorSpec::sharded): already the sum, left as they are.
void reduce_gradients(FlatBuffer& grads, const dist::Comm& comm);

// One forward result of a rank's parts (its micro-batches, in order): lm_loss over all their
// counted targets (each part's mean weighted by its count), auxiliary losses their mean (equal
// parts), counted summed, routing statistics merged.
ForwardResult combine_parts(std::span<const ForwardResult> parts);
// A rank's forward result made global, in the same way over the ranks: what the summed gradient
// differentiates (loss = lm_loss + the weighted auxiliary losses).
ForwardResult reduce_forward_result(const ForwardResult& f, const dist::Comm& comm);

}  // namespace ecmoe
