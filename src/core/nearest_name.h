// "Did you mean ...?": the candidate closest to a misspelt name by edit distance.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace ecmoe {

// Levenshtein distance (insertions, deletions, substitutions).
std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `name` if it is close enough to be a likely typo (at most
// max(3, |name| / 3) edits), else "".
std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace ecmoe
