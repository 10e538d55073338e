// Token embedding lookup plus learned position embedding: out[b, t] = tokens_table[tok] + pos[t].
#pragma once

namespace ecmoe::nn {

struct EmbeddingConfig {
  int batch = 0;
  int seq_len = 0;
  int dim = 0;
  int vocab_size = 0;
};

// out: [batch, seq_len, dim]; tokens: [batch, seq_len], each in [0, vocab_size);
// token_table: [vocab_size, dim]; pos_table: [>= seq_len, dim], or nullptr for none.
// Saves nothing: backward needs only the tokens.
void embedding_forward(float* out, const int* tokens, const float* token_table,
                       const float* pos_table, const EmbeddingConfig& cfg);
// Scatter-adds (+=) dout into dtoken_table [vocab_size, dim] and, unless nullptr, dpos_table.
// Deterministic without atomics: each thread owns a block of embedding columns and adds the
// positions in order, so the sums are the same at any thread count.
void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                        const int* tokens, const EmbeddingConfig& cfg);

// Throws unless every token id is inside the vocabulary.
void check_embedding_tokens(const int* tokens, const EmbeddingConfig& cfg);

}  // namespace ecmoe::nn
