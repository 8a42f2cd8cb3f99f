/* Inverse-CDF sampling and the speculative acceptance rule for fp32 on CPU, one call per batch:
 * the same arithmetic as sampler.sample_from and verify.verify (which stay the reference and the
 * fallback), without their ~5 and ~25 torch ops per call.
 *
 * Why: at rollout batch sizes each of those ops costs more than the arithmetic of a whole row
 * (a draw is ~60 additions at the zoo's vocabulary), and a speculative step draws k + 1 times. */
#include <math.h>
#include <stdint.h>

/* First index whose CDF exceeds min(u * total, the float just below total): torch's cumsum on CPU
 * accumulates float32 in double and rounds each prefix to float, and searchsorted(right=True)
 * counts the prefixes <= the target; both are reproduced exactly. cdf: V floats of scratch. */
static int64_t draw(const float *p, int V, float u, float *cdf) {
    double acc = 0.0;
    for (int v = 0; v < V; v++) {
        acc += p[v];
        cdf[v] = (float)acc;
    }
    float total = cdf[V - 1];
    float target = u * total, below = nextafterf(total, -total);
    if (below < target) target = below;
    int64_t count = 0;
    for (int v = 0; v < V; v++) count += cdf[v] <= target;
    return count;
}

/* out[n] = a draw from probs row n (row n of an [N, V] matrix with row stride p_sn) with uniform
 * u[(n / T) * u_sb + (n % T) * u_st]: rows are (b, t) pairs of a [B, T, V] tensor. */
void sample_rows(int N, int T, int V, const float *probs, long p_sn, const float *u, long u_sb, long u_st,
                 int64_t *out, float *cdf) {
    for (int n = 0; n < N; n++) out[n] = draw(probs + n * p_sn, V, u[(n / T) * u_sb + (n % T) * u_st], cdf);
}

/* The acceptance rule of verify.verify for B rows: p [B, K+1, V], q [B, K, V] (NULL: a
 * deterministic drafter, q one-hot at the draft), draft [B, K], u [B, K+1], all contiguous.
 * Writes the number of accepted drafts and the token drawn after them. scratch: 2V floats. */
void verify_rows(int B, int K, int V, const float *p, const float *q, const int64_t *draft, const float *u,
                 int64_t *num_accepted, int64_t *next_token, float *scratch) {
    float *residual = scratch, *cdf = scratch + V;
    for (int b = 0; b < B; b++) {
        const float *p_b = p + (long)b * (K + 1) * V, *u_b = u + (long)b * (K + 1);
        const float *q_b = q ? q + (long)b * K * V : 0;
        const int64_t *d_b = draft + (long)b * K;
        int n = 0;
        /* u < p/q written as u * q < p, as in verify.py: q(d) > 0 because d was drawn from q. */
        while (n < K && (q_b ? u_b[n] * q_b[n * V + d_b[n]] : u_b[n]) < p_b[n * V + d_b[n]]) n++;
        const float *p_next = p_b + (long)n * V;
        int any = 0;
        for (int v = 0; v < V; v++) {
            float q_v = n == K ? 0.0f : q_b ? q_b[n * V + v] : (float)(v == d_b[n]);
            float r = p_next[v] - q_v;
            residual[v] = r > 0.0f ? r : 0.0f;
            any |= residual[v] > 0.0f;
        }
        /* A rejection implies p != q, so the residual has mass; p itself only on round-off. */
        num_accepted[b] = n;
        next_token[b] = any ? draw(residual, V, u_b[K], cdf) : draw(p_next, V, u_b[K], cdf);
    }
}

void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy);

/* sampler.processed_probs of one row of logits x without truncation, into p: greedy rows a one-hot
 * at the first argmax; others the softmax of x / t, the division skipped when unit_temperature.
 * Drafters (head_sample) and the verify step (verify_step.c) both compute their distributions here. */
void processed_row(const float *x, int V, int greedy, float t, int unit_temperature, float *p) {
    int arg = 0;
    for (int v = 1; v < V; v++) if (x[v] > x[arg]) arg = v;
    if (greedy) {
        for (int v = 0; v < V; v++) p[v] = v == arg ? 1.0f : 0.0f;
        return;
    }
    float m = unit_temperature ? x[arg] : x[arg] / t;
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        p[v] = expf((unit_temperature ? x[v] : x[v] / t) - m);
        sum += p[v];
    }
    float inv = (float)(1.0 / sum);
    for (int v = 0; v < V; v++) p[v] *= inv;
}

/* A drafter's next token from its final hidden states: logits = h @ LM head (packed as small_gemm
 * takes it), then processed_row, then a draw as `draw`. Writes q row b at q + b * q_sb and the token
 * at tokens[b * t_sb]. scratch: B * V + V floats. The drafter's q needs to be exactly what it drew
 * from (it is), not torch's softmax to the last bit: the verifier's p is computed on its own. */
void head_sample(int B, int D, int V, const float *h, long h_sb, const float *lm_packed,
                 const float *temperature, const uint8_t *greedy, int unit_temperature,
                 const float *u, long u_sb, int64_t *tokens, long t_sb, float *q, long q_sb, float *scratch) {
    float *logits = scratch, *cdf = scratch + (long)B * V;
    small_gemm(B, V, D, h, h_sb, lm_packed, 0, 0, logits, V);
    for (int b = 0; b < B; b++) {
        float *p = q + b * q_sb;
        processed_row(logits + (long)b * V, V, greedy[b], temperature[b], unit_temperature, p);
        tokens[b * t_sb] = draw(p, V, u[b * u_sb], cdf);
    }
}
