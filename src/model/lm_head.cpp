// h is [N, d], table is [V, d], logits is [M, V] over the M counted rows
#include "model/lm_head.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ecmoe {

void lm_head_forward(nn::Backend& be, LmHead& head, const float* h, const int32_t* targets,
                     const float* table, const LmHeadShape& s) {
  head.rows.clear();
  head.targets.clear();
  for (int r = 0; r < s.rows; ++r) {
    ECMOE_CHECK(targets[r] >= -1 && targets[r] < s.vocab, "model: target ", targets[r],
                " at position ", r, " is outside [0, ", s.vocab, ") and is not -1");
    if (targets[r] < 0) continue;
    head.rows.push_back(r);
    head.targets.push_back(targets[r]);
  }
  const int m = int(head.rows.size());
  head.count = m;
  head.logits_valid = false;
  head.loss = {};
  if (m == 0) return;
  const int64_t d = s.dim;
  if (head.logits.capacity() == 0 && m < s.rows) {  // room for later batches' counts
    const int64_t room = lm_head_room_rows(m, s.rows);
    head.targets_on_backend.reserve(be, room);
    head.rows_on_backend.reserve(be, room);
    head.gathered.reserve(be, room * d);
    head.logits.reserve(be, room * s.vocab);
    head.logsumexp.reserve(be, room);
  }
  head.targets_on_backend.upload(be, head.targets);
  if (m == s.rows) {
    head.input = h;
  } else {
    head.rows_on_backend.upload(be, head.rows);
    head.gathered.resize(be, int64_t(m) * d);
    be.gather_rows(head.gathered.data(), h, head.rows_on_backend.data(), m, s.dim);
    head.input = head.gathered.data();
  }
  head.logits.resize(be, int64_t(m) * s.vocab);
  head.logsumexp.resize(be, m);
  const nn::LinearShape shape{m, s.dim, s.vocab};
  be.tied_output_forward(head.logits.data(), head.input, table, shape, s.precision);
  be.cross_entropy_forward(&head.loss, head.logsumexp.data(), head.logits.data(),
                           head.targets_on_backend.data(), m, s.vocab);
  head.logits_valid = true;
}

int64_t lm_head_room_rows(int64_t counted, int64_t rows) {
  const int64_t more = std::max<int64_t>(counted / 8, int64_t(4 * std::sqrt(double(counted))) + 8);
  return std::min(rows, counted + more);
}

double lm_head_loss(nn::Backend& be, LmHead& head) {
  if (head.count == 0) return 0.0;
  be.wait_for_results();
  return head.loss.loss;
}

void lm_head_target_log_probs(float* out, const LmHead& head, int vocab) {
  ECMOE_CHECK(head.logits_valid, "model: log-probabilities need a forward (before backward)");
  if (head.count == 0) return;
  std::vector<float> copied_logits, copied_lse;
  const float* logits = head.logits.data();
  const float* lse = head.logsumexp.data();
  if (std::string_view(head.logits.backend()->name()) != "cpu") {
    copied_logits = head.logits.download();
    copied_lse = head.logsumexp.download();
    logits = copied_logits.data();
    lse = copied_lse.data();
  }
  for (int64_t j = 0; j < head.count; ++j) out[j] = logits[j * vocab + head.targets[j]] - lse[j];
}

void lm_head_backward(nn::Backend& be, float* dh, float* dtable, LmHead& head, const float* table,
                      const LmHeadShape& s, int64_t divisor) {
  const int m = int(head.count);
  ECMOE_CHECK(divisor == 0 || divisor >= head.count,
              "model backward: the step's count of targets (", divisor,
              ") is below the batch's own (", head.count, ")");
  if (m == 0) return;
  ECMOE_CHECK(head.logits_valid, "model backward: the loss head was already differentiated");
  head.logits_valid = false;
  // In place: logits become dlogits (cross_entropy_backward writes, it does not accumulate).
  be.cross_entropy_backward(head.logits.data(), head.logits.data(), head.logsumexp.data(),
                            head.targets_on_backend.data(), divisor > 0 ? divisor : head.count, 1.f,
                            m, s.vocab);
  const nn::LinearShape shape{m, s.dim, s.vocab};
  if (m == s.rows) {
    be.tied_output_backward(dh, dtable, head.logits.data(), head.input, table, shape, s.precision);
    return;
  }
  const int64_t d = s.dim;
  if (head.d_gathered.capacity() == 0) head.d_gathered.reserve(be, head.gathered.capacity());
  head.d_gathered.resize(be, int64_t(m) * d);
  be.fill(head.d_gathered.data(), int64_t(m) * d, 0.f);
  be.tied_output_backward(head.d_gathered.data(), dtable, head.logits.data(), head.input, table,
                          shape, s.precision);
  be.scatter_add_rows(dh, head.d_gathered.data(), head.rows_on_backend.data(), m,
                      s.dim);  // distinct rows
}

}  // namespace ecmoe
