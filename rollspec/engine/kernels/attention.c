/* Attention of a few new tokens per row over the KV cache, fp32, AVX-512F: what the cached
 * forward's decode, verify and drafting steps ask for (T = 1..k+1 tokens per row, a few heads).
 *
 * Why not torch's SDPA: its CPU flash kernel costs ~30 us per call at batch 1 and ~270 us at
 * batch 16 (ragged rows, masked) for products of a few MFLOP; here one pass per (row, head,
 * token) over the keys it may see, with head_dim a multiple of 16 held in registers.
 *
 * Token (b, t) sees keys 0 .. positions[b, t] (and below kv_len), the rule of the engine's
 * AttentionBatch mask; positions == NULL means every token sees all kv_len keys. Query head h
 * reads kv head h / (H / G) (grouped-query attention, as SDPA's enable_gqa). Returns -1 when
 * the scratch for one token's scores cannot be allocated. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef __AVX512F__
#error "attention needs AVX-512F"
#endif

#define MAX_VECS 16 /* head_dim <= 256 */

int small_attention(int B, int T, int H, int G, int E, int kv_len, float scale,
                     const float *q, long q_sb, long q_sh, long q_st,
                     const float *k, long k_sb, long k_sg, long k_sl,
                     const float *v, long v_sb, long v_sg, long v_sl,
                     const int64_t *positions, long p_sb, long p_st,
                     float *out, long o_sb, long o_st, long o_sh) {
    int vecs = E / 16, per_group = H / G;
    float *scores = malloc(sizeof(float) * (kv_len > 0 ? kv_len : 1));
    if (!scores) return -1;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            int limit = kv_len;
            if (positions) {
                int64_t seen = positions[b * p_sb + t * p_st] + 1;
                limit = seen < kv_len ? (int)seen : kv_len;
            }
            for (int h = 0; h < H; h++) {
                const float *qv = q + b * q_sb + h * q_sh + t * q_st;
                const float *kb = k + b * k_sb + (h / per_group) * k_sg;
                const float *vb = v + b * v_sb + (h / per_group) * v_sg;
                __m512 qr[MAX_VECS];
                for (int i = 0; i < vecs; i++) qr[i] = _mm512_mul_ps(_mm512_loadu_ps(qv + 16 * i), _mm512_set1_ps(scale));
                float top = -INFINITY;
                for (int l = 0; l < limit; l++) {
                    const float *kl = kb + l * k_sl;
                    __m512 acc = _mm512_mul_ps(qr[0], _mm512_loadu_ps(kl));
                    for (int i = 1; i < vecs; i++) acc = _mm512_fmadd_ps(qr[i], _mm512_loadu_ps(kl + 16 * i), acc);
                    float s = _mm512_reduce_add_ps(acc);
                    scores[l] = s;
                    if (s > top) top = s;
                }
                __m512 o[MAX_VECS];
                for (int i = 0; i < vecs; i++) o[i] = _mm512_setzero_ps();
                float total = 0.0f;
                for (int l = 0; l < limit; l++) {
                    float p = expf(scores[l] - top);
                    total += p;
                    const float *vl = vb + l * v_sl;
                    __m512 pv = _mm512_set1_ps(p);
                    for (int i = 0; i < vecs; i++) o[i] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vl + 16 * i), o[i]);
                }
                float *ov = out + b * o_sb + t * o_st + h * o_sh;
                __m512 inv = _mm512_set1_ps(limit > 0 ? 1.0f / total : 0.0f);
                for (int i = 0; i < vecs; i++) _mm512_storeu_ps(ov + 16 * i, _mm512_mul_ps(o[i], inv));
            }
        }
    }
    free(scores);
    return 0;
}
