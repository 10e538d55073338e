// Human-readable summaries of an evaluation, shared by `ecmoe train` (its final validation) and
// `ecmoe eval`: loss and perplexity, then per MoE layer the experts-per-token histogram, the
// per-expert load and the dropped fraction.
#pragma once
#include <string>

#include "model/model_config.h"
#include "train/evaluate.h"

namespace ecmoe {

// Several lines, each ending in '\n'.
std::string format_eval_report(const ModelConfig& model, const EvalResult& result);

}  // namespace ecmoe
