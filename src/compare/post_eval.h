// Evaluation of a finished decoder run from its checkpoint, with its own router or another one
// (an expert-choice checkpoint evaluated with the thresholds it calibrated while training):
// validation perplexity, leakage, realised experts per token and expert load, and the speed of
// token-by-token generation with the KV cache where the routing allows it.
#pragma once
#include <optional>
#include <string>

#include "compare/run_record.h"
#include "train/train_device.h"

namespace ecmoe::compare {

// router: "" (the checkpoint's) or a router that may replace it (eval --router's rule).
// device: where the evaluation, the leakage measurement and the generation run (nullptr: the
// host), as the suite's training did (`compare --device`).
PostEval evaluate_checkpoint(const std::string& checkpoint, const std::string& router,
                             const TrainDevice* device = nullptr);

Json post_eval_to_json(const PostEval& e);
PostEval post_eval_from_json(const Json& j);

}  // namespace ecmoe::compare
