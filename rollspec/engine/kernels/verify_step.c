/* The tail of a decode or verify step in one call, fp32 on CPU: LM head, the policy's processed
 * distribution, the acceptance rule, the emitted tokens and their logprobs. In torch that is ~15 ops
 * (project, processed_probs, verify, a cat and a scatter, token_logprobs): at B = 1-4 they cost
 * several times their arithmetic (the zoo's LM head is 192 x 63). Same numbers as those functions
 * up to float rounding in the softmax and log; the logits are small_gemm's, as `project` computes
 * them, so greedy choices are exactly the torch path's. */
#include <math.h>
#include <stdint.h>

void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy);
void processed_row(const float *x, int V, int greedy, float t, int unit_temperature, float *p);
void verify_rows(int B, int K, int V, const float *p, const float *q, const int64_t *draft, const float *u,
                 int64_t *num_accepted, int64_t *next_token, float *scratch);

/* sampler.token_logprobs for one position: log p(token) under the processed distribution it was
 * drawn from; greedy rows (one-hot p) the untempered log-softmax of the logits instead. */
static float token_logprob(const float *x, const float *p, int V, int greedy, int64_t token) {
    if (!greedy) return logf(p[token]);
    float m = x[0];
    for (int v = 1; v < V; v++) if (x[v] > m) m = x[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += expf(x[v] - m);
    return (x[token] - m) - logf((float)sum);
}

/* B rows of Q = K + 1 positions (K = 0: a plain decode step). h: the final-norm hidden states
 * [B * Q, D], contiguous. q [B, K, V] (NULL: a deterministic drafter), draft [B, K], u [B, Q] as in
 * verify_rows. Writes num_accepted [B], emitted [B, Q] (row b: draft[:n], then the drawn token; the
 * columns after it repeat the draft and are never read) and logprobs [B, Q] of the emitted tokens.
 * next: B int64 of scratch; scratch: 2 * B * Q * V + 2 * V floats. */
void verify_step(int B, int K, int D, int V, const float *h, const float *lm_packed, const float *temperature,
                 const uint8_t *greedy, int unit_temperature, const float *q, const int64_t *draft, const float *u,
                 int64_t *num_accepted, int64_t *emitted, float *logprobs, int64_t *next, float *scratch) {
    const int Q = K + 1;
    const long rows = (long)B * Q;
    float *logits = scratch, *p = scratch + rows * V;
    small_gemm((int)rows, V, D, h, D, lm_packed, 0, 0, logits, V);
    for (long r = 0; r < rows; r++)
        processed_row(logits + r * V, V, greedy[r / Q], temperature[r / Q], unit_temperature, p + r * V);
    verify_rows(B, K, V, p, q, draft, u, num_accepted, next, p + rows * V);
    for (int b = 0; b < B; b++) {
        const int64_t n = num_accepted[b];
        for (int j = 0; j < Q; j++) {
            const long r = (long)b * Q + j;
            emitted[r] = j == n ? next[b] : draft[(long)b * K + (j < K ? j : 0)];
            logprobs[r] = token_logprob(logits + r * V, p + r * V, V, greedy[b], emitted[r]);
        }
    }
}
