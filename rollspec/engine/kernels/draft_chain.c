/* A draft model's whole draft chain in one call, fp32: for j = 0 .. K-1 draw token j from the
 * current last hidden states (head_sample), and unless it is the last, run the draft model's
 * cached forward on it (decoder_forward) at each row's next position.
 *
 * The same calls in the same order as the Python loop of drafters/draft_model.py through the
 * kernels, so the proposal is identical bit for bit, without a Python round trip per token. */
#include <stddef.h>
#include <stdint.h>

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
                    float *x, float *out, float *scratch);

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
                                     positions, 1, 0, norm_w, norm_eps, x, hidden, layer_scratch);
        if (status) return status;
    }
    return 0;
}
