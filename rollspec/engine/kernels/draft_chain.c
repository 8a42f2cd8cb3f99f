/* A draft model's catch-up and whole draft chain in one call each, fp32. The catch-up feeds each row
 * the context tokens its cache lacks in one forward (decoder_forward); the chain, for j = 0 .. K-1,
 * draws token j from the current last hidden states (head_sample) and unless it is the last runs the
 * cached forward on it at each row's next position.
 *
 * The same calls in the same order, on the same inputs, as drafters/draft_model.py's Python path through
 * the kernels, so the proposal is identical bit for bit, without the Python around each call (index
 * tensors, the batch's metadata, gathers: ~0.1 ms of a ~0.5 ms draft-model step at B = 1 on the zoo). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void batch_extent(int B, int row_start, const int64_t *lens, int64_t *rows, int64_t *shortest, int64_t *longest);
int chain_step(int B, int j, const int64_t *lens, int64_t longest, int max_len, int64_t *positions);
void head_sample(int B, int D, int V, const float *h, long h_sb, const float *lm_packed,
                 const float *temperature, const uint8_t *greedy, int unit_temperature,
                 const float *u, long u_sb, int64_t *tokens, long t_sb, float *q, long q_sb, float *scratch);
int decoder_forward(int L, int B, int T, int D, int V, int H, int G, int E, int I, int has_input_norm,
                    const int64_t *input_ids, long i_sb, long i_st, const float *embed, const int64_t *weights,
                    const float *eps, const float *cos, const float *sin, float *cache, long c_l, long c_s, long c_c,
                    long c_m, int row_start, int kv_len, int masked, const int64_t *rows, long r_sb, long r_st,
                    const int64_t *positions, long p_sb, long p_st, const float *norm_w, float norm_eps,
                    float *x, float *out, float *scratch, float *store, long s_sr, const int64_t *slots);

/* DraftModelDrafter._catch_up for rows [row_start, row_start + B): row b's tokens at positions lens[b] ..
 * lens[b] + width - 1 of tokens [rows, M] (row stride t_sb; positions past M - 1 read M - 1) in one forward
 * of width tokens per row at cache positions clamped onto max_len - 1, attending to min(max(lens) + width,
 * max_len) keys, masked unless width is 1 and every row has the same length: AttentionBatch.build's
 * batch. Row b's hidden state after its num_new[b] real tokens goes to hidden[row_start + b]. Scratch:
 * ids, positions, rows [B * width]; x, out [B * width, D]; layer_scratch as decoder_layer's. */
int draft_catch_up(int L, int B, int row_start, int width, int D, int V, int H, int G, int E, int I,
                   int has_input_norm, const int64_t *tokens, long t_sb, int M, const int64_t *lens,
                   const int64_t *num_new, const float *embed, const int64_t *weights, const float *eps,
                   const float *cos, const float *sin, float *cache, long c_l, long c_s, long c_c, long c_m,
                   int max_len, const float *norm_w, float norm_eps, float *hidden, int64_t *ids, int64_t *positions,
                   int64_t *rows, float *x, float *out, float *layer_scratch) {
    int64_t shortest, longest;
    batch_extent(B, row_start, lens, rows, &shortest, &longest);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < width; t++) {
            int64_t pos = lens[b] + t;
            ids[b * width + t] = tokens[(row_start + b) * t_sb + (pos < M - 1 ? pos : M - 1)];
            positions[b * width + t] = pos < max_len - 1 ? pos : max_len - 1;
        }
    int64_t kv_len = longest + width < max_len ? longest + width : max_len;
    int masked = !(width == 1 && shortest == longest);
    int status = decoder_forward(L, B, width, D, V, H, G, E, I, has_input_norm, ids, width, 1, embed, weights, eps,
                                 cos, sin, cache, c_l, c_s, c_c, c_m, row_start, (int)kv_len, masked, rows, 1, 0,
                                 positions, width, 1, norm_w, norm_eps, x, out, layer_scratch, NULL, 0, NULL);
    if (status) return status;
    for (int b = 0; b < B; b++)
        memcpy(hidden + (size_t)(row_start + b) * D, out + ((size_t)b * width + num_new[b] - 1) * D, sizeof(float) * D);
    return 0;
}

/* hidden [B, D]: the catch-up's last hidden states (overwritten). Step j writes cache position
 * min(lens[b] + j, max_len - 1) and attends to min(max(lens) + 1 + j, max_len) keys, masked when
 * rows differ (AttentionBatch.chain). Uniforms u [B, K] (row stride u_sb); tokens [B, K]; q [B, K, V].
 * Scratch: x [B, D], positions and rows [B], sample_scratch B * V + V floats, layer_scratch as
 * decoder_layer's for B tokens. The model's layout as decoder_forward takes it; returns its status. */
int draft_chain(int L, int B, int K, int D, int V, int H, int G, int E, int I, int has_input_norm, float *hidden,
                const float *lm_packed, const float *temperature, const uint8_t *greedy, int unit_temperature,
                const float *u, long u_sb, const float *embed, const int64_t *weights, const float *eps,
                const float *cos, const float *sin, float *cache, long c_l, long c_s, long c_c, long c_m,
                const int64_t *lens, int max_len, const float *norm_w, float norm_eps, int64_t *tokens, float *q,
                float *x, int64_t *positions, int64_t *rows, float *sample_scratch, float *layer_scratch) {
    int64_t shortest, longest;
    batch_extent(B, 0, lens, rows, &shortest, &longest);
    for (int j = 0; j < K; j++) {
        head_sample(B, D, V, hidden, D, lm_packed, temperature, greedy, unit_temperature, u + j, u_sb,
                    tokens + j, K, q + (size_t)j * V, (long)K * V, sample_scratch);
        if (j + 1 == K) break;
        int kv_len = chain_step(B, j, lens, longest, max_len, positions);
        int status = decoder_forward(L, B, 1, D, V, H, G, E, I, has_input_norm, tokens + j, K, 1, embed, weights, eps,
                                     cos, sin, cache, c_l, c_s, c_c, c_m, 0, kv_len, shortest != longest, rows, 1, 0,
                                     positions, 1, 0, norm_w, norm_eps, x, hidden, layer_scratch, NULL, 0, NULL);
        if (status) return status;
    }
    return 0;
}
