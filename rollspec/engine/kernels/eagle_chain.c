/* An EAGLE head's whole draft chain in one call, fp32: for j = 0 .. K-1 draw token j from the
 * current feature (head_sample), and unless it is the last, feed (feature, token) through the
 * head: x = table[token] + feature @ Wf (fc's two halves, EagleHead.fc_halves), then the head's
 * decoder layer at each row's next position, whose output is the next feature.
 *
 * The same calls in the same order as the Python loop of drafters/eagle.py through the kernels,
 * so the proposal is identical bit for bit; what goes is ~50 us of Python and torch dispatch per
 * drafted token around ~30 us of arithmetic. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy);
int decoder_layer(int B, int T, int D, int H, int G, int E, int I, float eps, int has_input_norm,
                  float *x, const float *qkv_p, const float *qk_w, const float *o_p, const float *gate_up_p,
                  const float *down_p, const float *cos, const float *sin,
                  float *cache, long c_s, long c_c, long c_m, int row_start, int kv_len, int masked,
                  const int64_t *rows, long r_sb, long r_st, const int64_t *positions, long p_sb, long p_st,
                  float *scratch);
void batch_extent(int B, int row_start, const int64_t *lens, int64_t *rows, int64_t *shortest, int64_t *longest);
int chain_step(int B, int j, const int64_t *lens, int64_t longest, int max_len, int64_t *positions);
void head_sample(int B, int D, int V, const float *h, long h_sb, const float *lm_packed,
                 const float *temperature, const uint8_t *greedy, int unit_temperature,
                 const float *u, long u_sb, int64_t *tokens, long t_sb, float *q, long q_sb, float *scratch);

/* feature [B, D]: the catch-up's last output per row (overwritten). lens [B]: each row's first
 * chain position (its number of real pairs); step j writes position min(lens + j, max_len - 1)
 * and attends to min(max(lens) + 1 + j, max_len) keys, masked when rows differ in length (as
 * AttentionBatch.chain). Uniforms u [B, K] with row stride u_sb; tokens [B, K]; q [B, K, V].
 * Scratch: x [B, D]; positions and rows [B] each; sample_scratch B * V + V floats;
 * layer_scratch as decoder_layer's for B tokens. Returns 0, -2 for a token id not below V, or
 * decoder_layer's error. */
int eagle_chain(int B, int K, int D, int V, int H, int G, int E, int I, float eps, float *feature,
                const float *lm_packed, const float *temperature, const uint8_t *greedy, int unit_temperature,
                const float *u, long u_sb, const float *table, const float *feature_packed,
                const float *qkv_p, const float *qk_w, const float *o_p, const float *gate_up_p, const float *down_p,
                const float *cos, const float *sin, float *cache, long c_s, long c_c, long c_m,
                const int64_t *lens, int max_len, int64_t *tokens, float *q,
                float *x, int64_t *positions, int64_t *rows, float *sample_scratch, float *layer_scratch) {
    int64_t shortest, longest;
    batch_extent(B, 0, lens, rows, &shortest, &longest);
    int masked = shortest != longest;
    for (int j = 0; j < K; j++) {
        head_sample(B, D, V, feature, D, lm_packed, temperature, greedy, unit_temperature, u + j, u_sb,
                    tokens + j, K, q + (size_t)j * V, (long)K * V, sample_scratch);
        if (j + 1 == K) break;
        for (int b = 0; b < B; b++) {
            int64_t id = tokens[(size_t)b * K + j];
            if (id < 0 || id >= V) return -2;  /* never read past the table */
            memcpy(x + (size_t)b * D, table + (size_t)id * D, sizeof(float) * D);
        }
        small_gemm(B, D, D, feature, D, feature_packed, x, D, x, D);  /* x = table rows + feature @ Wf */
        int kv_len = chain_step(B, j, lens, longest, max_len, positions);
        int status = decoder_layer(B, 1, D, H, G, E, I, eps, 0, x, qkv_p, qk_w, o_p, gate_up_p, down_p, cos, sin,
                                   cache, c_s, c_c, c_m, 0, kv_len, masked, rows, 1, 0, positions, 1, 0, layer_scratch);
        if (status) return status;
        memcpy(feature, x, sizeof(float) * (size_t)B * D);
    }
    return 0;
}

/* The catch-up forward of rows [row_start, row_start + B) before a chain: each row feeds its
 * num_new[b] pairs (policy feature at position p, token at p + 1) for p = lens[b] .. , padded to
 * `width` pairs, through the head (x = table[token] + feature @ Wf, then the decoder layer writing
 * cache positions p), and feature_out[b] gets the output of its last real pair; a padded pair's
 * cache writes land past the row's pairs, where the chain overwrites them before reading. As
 * EagleDrafter._catch_up: gathers clamp p to M - 2 (hidden / tokens are [slots, M, D] / [rows, M]
 * with strides h_sr / t_sr; row r's hidden states are in slot slots[r]), cache positions to max_len - 1. Scratch: x and f_in
 * [B * width, D]; positions [B * width] and rows [B]; layer_scratch as decoder_layer's for
 * B * width tokens. Returns 0, -2 for a token id not below V, or decoder_layer's error. */
int eagle_catch_up(int B, int row_start, int width, int D, int V, int H, int G, int E, int I, float eps,
                   const float *hidden, long h_sr, const int64_t *slots, const int64_t *tokens, long t_sr, int M,
                   const int64_t *lens, const int64_t *num_new, const float *table, const float *feature_packed,
                   const float *qkv_p, const float *qk_w, const float *o_p, const float *gate_up_p,
                   const float *down_p, const float *cos, const float *sin, float *cache, long c_s, long c_c,
                   long c_m, int max_len, float *feature_out, float *x, float *f_in, int64_t *positions,
                   int64_t *rows, float *layer_scratch) {
    int64_t shortest, longest;
    batch_extent(B, row_start, lens, rows, &shortest, &longest);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < width; t++) {
            int64_t p = lens[b] + t, g = p < M - 2 ? p : M - 2;
            size_t n = (size_t)b * width + t;
            const float *f = hidden + (size_t)slots[row_start + b] * h_sr + (size_t)g * D;
            memcpy(f_in + n * D, f, sizeof(float) * D);
            int64_t id = tokens[(size_t)(row_start + b) * t_sr + g + 1];
            if (id < 0 || id >= V) return -2;  /* never read past the table */
            memcpy(x + n * D, table + (size_t)id * D, sizeof(float) * D);
            positions[n] = p < max_len - 1 ? p : max_len - 1;
        }
    }
    small_gemm(B * width, D, D, f_in, D, feature_packed, x, D, x, D);
    int64_t kv_len = longest + width;
    int masked = !(width == 1 && shortest == longest);
    int status = decoder_layer(B, width, D, H, G, E, I, eps, 0, x, qkv_p, qk_w, o_p, gate_up_p, down_p, cos, sin,
                               cache, c_s, c_c, c_m, row_start, kv_len < max_len ? (int)kv_len : max_len, masked,
                               rows, 1, 0, positions, width, 1, layer_scratch);
    if (status) return status;
    for (int b = 0; b < B; b++) {
        int64_t last = num_new[b] - 1;
        if (last < 0) last += width;  /* as the Python index */
        memcpy(feature_out + (size_t)b * D, x + ((size_t)b * width + last) * D, sizeof(float) * D);
    }
    return 0;
}
