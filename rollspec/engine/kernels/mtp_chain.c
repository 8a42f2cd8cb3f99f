/* The MTP drafter's whole chain in one call, fp32 (drafters/mtp.py with MTPLayer.forward_cached of
 * engine/mtp_head.py): for depth j = 0 .. K-1, with head h = min(j, n_heads - 1),
 *   x     = embed_VD_h[token] + (state @ state_DD_h) * rms_scale(state)
 *   x    += down_h(silu(gate) * up), gate|up = (x @ gate_up_h) * rms_scale(x)
 *   draft j ~ head_sample(rms_norm(x, norm_w_h)), then state = x, token = draft j.
 * The torch path's math with the folded weights it reads; the same up to float rounding (the
 * SiLU's exp, the norms' sums), and each draft is drawn from exactly the q reported, which is
 * what losslessness needs. Why: ~15 torch ops per depth cost several times its arithmetic. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy);
float rms_scale(const float *v, int n, float eps);
void silu_mul(float *g, const float *u, int n, float s);
void rms_norm_rows(int N, int D, const float *x, const float *w, float eps, float *out);
void head_sample(int B, int D, int V, const float *h, long h_sb, const float *lm_packed,
                 const float *temperature, const uint8_t *greedy, int unit_temperature,
                 const float *u, long u_sb, int64_t *tokens, long t_sb, float *q, long q_sb, float *scratch);

/* state [B, D] (overwritten), token [B]: the policy's hidden state before each row's pending token and
 * that token. heads [n_heads, 5] addresses: embed_VD, state_DD packed, gate_up packed, down packed,
 * norm weight; eps [n_heads]. Uniforms u [B, K] (row stride u_sb); tokens [B, K]; q [B, K, V].
 * Scratch: x and normed [B, D], mm [B, D], gate_up [B, 2I], sample_scratch B * V + V floats.
 * Returns -2 for a pending token outside the table (torch's embedding would raise), else 0. */
int mtp_chain(int B, int K, int D, int V, int I, int n_heads, const int64_t *heads, const float *eps,
              float *state, const int64_t *token, const float *lm_packed, const float *temperature,
              const uint8_t *greedy, int unit_temperature, const float *u, long u_sb, int64_t *tokens, float *q,
              float *x, float *normed, float *mm, float *gate_up, float *sample_scratch) {
    for (int b = 0; b < B; b++)
        if (token[b] < 0 || token[b] >= V) return -2;
    for (int j = 0; j < K; j++) {
        const int64_t *h = heads + 5 * (j < n_heads ? j : n_heads - 1);
        const float *embed = (const float *)h[0], *norm_w = (const float *)h[4];
        const float e = eps[j < n_heads ? j : n_heads - 1];
        small_gemm(B, D, D, state, D, (const float *)h[1], 0, 0, mm, D);
        for (int b = 0; b < B; b++) {
            int64_t t = j == 0 ? token[b] : tokens[b * K + j - 1];
            float s = rms_scale(state + (size_t)b * D, D, e);
            const float *row = embed + (size_t)t * D, *m = mm + (size_t)b * D;
            float *xb = x + (size_t)b * D;
            for (int i = 0; i < D; i++) xb[i] = row[i] + m[i] * s;
        }
        small_gemm(B, 2 * I, D, x, D, (const float *)h[2], 0, 0, gate_up, 2 * I);
        for (int b = 0; b < B; b++) {
            float *g = gate_up + (size_t)b * 2 * I;
            silu_mul(g, g + I, I, rms_scale(x + (size_t)b * D, D, e));
        }
        small_gemm(B, D, I, gate_up, 2 * I, (const float *)h[3], x, D, x, D);  /* x += act @ Wdown */
        rms_norm_rows(B, D, x, norm_w, e, normed);
        head_sample(B, D, V, normed, D, lm_packed, temperature, greedy, unit_temperature, u + j, u_sb,
                    tokens + j, K, q + (size_t)j * V, (long)K * V, sample_scratch);
        memcpy(state, x, sizeof(float) * (size_t)B * D);
    }
    return 0;
}
