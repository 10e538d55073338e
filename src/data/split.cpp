// Hash-based split draw (FNV-1a of "source/name", mixed with the seed) and the non-empty fix-up.
#include "data/split.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "data/checksum.h"

namespace ecmoe::data {

double split_draw(const Document& doc, uint64_t seed) {
  Fnv1a64 h;
  h.update(doc.source);
  h.update("/", 1);
  h.update(doc.name);
  const uint64_t bits = mix64(h.value() ^ mix64(seed));
  return double(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

std::vector<char> split_assignment(const std::vector<Document>& docs, const SplitConfig& config) {
  ECMOE_CHECK(config.val_fraction >= 0.0 && config.val_fraction <= 1.0,
              "validation fraction must be in [0, 1], got ", config.val_fraction);
  const std::size_t n = docs.size();
  std::vector<double> draws(n);
  std::vector<char> to_val(n);
  std::size_t val_count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    draws[i] = split_draw(docs[i], config.seed);
    to_val[i] = draws[i] < config.val_fraction;
    val_count += to_val[i];
  }
  if (n >= 2 && config.val_fraction > 0.0 && config.val_fraction < 1.0) {
    if (val_count == 0) {
      to_val[std::min_element(draws.begin(), draws.end()) - draws.begin()] = 1;
    } else if (val_count == n) {
      to_val[std::max_element(draws.begin(), draws.end()) - draws.begin()] = 0;
    }
  }
  return to_val;
}

SplitDocuments split_documents(std::vector<Document> docs, const SplitConfig& config) {
  const std::vector<char> to_val = split_assignment(docs, config);
  SplitDocuments out;
  for (std::size_t i = 0; i < docs.size(); ++i)
    (to_val[i] ? out.val : out.train).push_back(std::move(docs[i]));
  return out;
}

}  // namespace ecmoe::data
