/* One decoder layer of the cached forward in a single call, fp32, AVX-512F: the same math as
 * cached_forward.layer_forward (folded norm weights, q/k norms, RoPE, KV-cache write, attention,
 * residual projections, gated MLP) for layers without biases.
 *
 * Why: at the zoo's size a layer is ~40 torch ops and ~200 us of dispatch and Python around
 * ~25 us of arithmetic; here the same step costs the arithmetic and one call. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void store_hidden(int B, int T, int D, const float *hidden, const int64_t *rows, long r_sb, long r_st,
                  const int64_t *positions, long p_sb, long p_st, float *store, long s_sr, const int64_t *slots);
void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy);
int small_attention(int B, int T, int H, int G, int E, int kv_len, float scale,
                    const float *q, long q_sb, long q_sh, long q_st,
                    const float *k, long k_sb, long k_sg, long k_sl,
                    const float *v, long v_sb, long v_sg, long v_sl,
                    const int64_t *positions, long p_sb, long p_st,
                    float *out, long o_sb, long o_st, long o_sh);

/* rsqrt(mean(v^2) + eps), as cached_forward.rms_scale (mtp_chain.c uses it too) */
float rms_scale(const float *v, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)v[i] * v[i];
    return 1.0f / sqrtf((float)(sum / n) + eps);
}

/* e^x for 16 lanes: x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes expf's degree-7 polynomial, times
 * 2^n. Within ~2 ulp of expf over the range that matters here; lanes below -87.3 give 0 and above 88.7 inf,
 * as expf does. */
static inline __m512 exp16(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* g[i] = silu(g[i] * s) * (u[i] * s): the gated MLP's activation on one row, s the row's rms scale
 * (the post-attention norm's weight is folded into the projection). Vectorized: the scalar expf of
 * the libm costs ~4 ns a call, more than the projections around it spend per element at 5+ rows. */
void silu_mul(float *g, const float *u, int n, float s) {
    const __m512 vs = _mm512_set1_ps(s), one = _mm512_set1_ps(1.0f);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vs);
        __m512 sig = _mm512_div_ps(gi, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gi))));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(sig, _mm512_mul_ps(_mm512_loadu_ps(u + i), vs)));
    }
    for (; i < n; i++) {
        float gi = g[i] * s;
        g[i] = gi / (1.0f + expf(-gi)) * (u[i] * s);
    }
}

/* x [B*T, D] is updated in place. scratch holds B*T * ((H + 2G) * E + H * E + 2 * I + E) floats.
 * rows / positions: [B, T] int64 with the given strides; masked = 0 when every token sees every
 * key in [0, kv_len). cos / sin: the rotary tables [positions, E] (sin sign-folded as
 * cached_forward.rope_tables takes it), read at each token's position. Returns 0, or the
 * attention's error. */
int decoder_layer(int B, int T, int D, int H, int G, int E, int I, float eps, int has_input_norm,
                  float *x, const float *qkv_p, const float *qk_w, const float *o_p, const float *gate_up_p,
                  const float *down_p, const float *cos, const float *sin,
                  float *cache, long c_s, long c_c, long c_m, int row_start, int kv_len, int masked,
                  const int64_t *rows, long r_sb, long r_st, const int64_t *positions, long p_sb, long p_st,
                  float *scratch) {
    int N = B * T, C = H + 2 * G, half = E / 2;
    float *qkv = scratch, *attn = qkv + (size_t)N * C * E, *gate_up = attn + (size_t)N * H * E;
    float *rolled = gate_up + (size_t)N * 2 * I;

    small_gemm(N, C * E, D, x, D, qkv_p, 0, 0, qkv, C * E);
    for (int n = 0; n < N; n++) {
        float *row = qkv + (size_t)n * C * E;
        if (has_input_norm) {
            float s = rms_scale(x + (size_t)n * D, D, eps);
            for (int i = 0; i < C * E; i++) row[i] *= s;
        }
        int b = n / T, t = n % T;
        int64_t r = rows[b * r_sb + t * r_st], pos = positions[b * p_sb + t * p_st];
        const float *cs = cos + (size_t)pos * E, *sn = sin + (size_t)pos * E;
        for (int c = 0; c < H + G; c++) {  /* q and k heads: norm, then rotate */
            float *v = row + c * E;
            if (qk_w) {
                float s = rms_scale(v, E, eps);
                for (int i = 0; i < E; i++) v[i] = v[i] * s * qk_w[c * E + i];
            }
            memcpy(rolled, v, sizeof(float) * E);  /* v * cos + roll(v, half) * sin, without a modulo per element */
            for (int i = 0; i < half; i++) v[i] = v[i] * cs[i] + rolled[i + half] * sn[i];
            for (int i = half; i < E; i++) v[i] = v[i] * cs[i] + rolled[i - half] * sn[i];
        }
        for (int c = 0; c < 2 * G; c++)
            memcpy(cache + r * c_s + c * c_c + pos * c_m, row + (H + c) * E, sizeof(float) * E);
    }
    const float *keys = cache + (size_t)row_start * c_s;
    int status = small_attention(B, T, H, G, E, kv_len, 1.0f / sqrtf((float)E),
                                 qkv, (long)T * C * E, E, (long)C * E,
                                 keys, c_s, c_c, c_m, keys + (size_t)G * c_c, c_s, c_c, c_m,
                                 masked ? positions : 0, p_sb, p_st,
                                 attn, (long)T * H * E, (long)H * E, E);
    if (status) return status;
    small_gemm(N, D, H * E, attn, H * E, o_p, x, D, x, D);  /* x += attn @ Wo, in place */

    small_gemm(N, 2 * I, D, x, D, gate_up_p, 0, 0, gate_up, 2 * I);
    for (int n = 0; n < N; n++) {
        float s = rms_scale(x + (size_t)n * D, D, eps);
        float *g = gate_up + (size_t)n * 2 * I;
        silu_mul(g, g + I, I, s);
    }
    /* the activations sit in the first I columns of each 2I-wide row */
    small_gemm(N, D, I, gate_up, 2 * I, down_p, x, D, x, D);  /* x += act @ Wdown */
    return 0;
}

/* out[n] = x[n] * rms_scale(x[n]) * w: the final norm of a forward (cached_forward.rms_norm). */
void rms_norm_rows(int N, int D, const float *x, const float *w, float eps, float *out) {
    for (int n = 0; n < N; n++) {
        const float *row = x + (size_t)n * D;
        float s = rms_scale(row, D, eps), *o = out + (size_t)n * D;
        for (int i = 0; i < D; i++) o[i] = row[i] * s * w[i];
    }
}

/* A whole cached forward of a decoder: embedding lookup, L layers as decoder_layer, final norm.
 * Every layer shares the head / width layout; layer l's packed weights are the pointers
 * weights[5l .. 5l+4] = qkv, qk norm weights (0: none), o, gate_up, down, its eps eps[l] and its
 * cache cache + l * c_l. Token (b, t) is input_ids[b * i_sb + t * i_st]. x: [B*T, D] scratch,
 * out: [B*T, D] final-norm hidden states, scratch as decoder_layer's. Same calls, same order as
 * the per-layer path (bit-identical results); what goes is a Python round trip per layer. With a
 * store (NULL: none), out also goes into it as store_hidden writes it (engine/hidden_store.py). */
int decoder_forward(int L, int B, int T, int D, int V, int H, int G, int E, int I, int has_input_norm,
                    const int64_t *input_ids, long i_sb, long i_st, const float *embed, const int64_t *weights,
                    const float *eps, const float *cos, const float *sin, float *cache, long c_l, long c_s, long c_c,
                    long c_m, int row_start, int kv_len, int masked, const int64_t *rows, long r_sb, long r_st,
                    const int64_t *positions, long p_sb, long p_st, const float *norm_w, float norm_eps,
                    float *x, float *out, float *scratch, float *store, long s_sr, const int64_t *slots) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int64_t id = input_ids[b * i_sb + t * i_st];
            if (id < 0 || id >= V) return -2;  /* torch's embedding would raise: never read past the table */
            memcpy(x + ((size_t)b * T + t) * D, embed + (size_t)id * D, sizeof(float) * D);
        }
    for (int l = 0; l < L; l++) {
        const int64_t *w = weights + 5 * l;
        int status = decoder_layer(B, T, D, H, G, E, I, eps[l], has_input_norm, x, (const float *)w[0],
                                   (const float *)w[1], (const float *)w[2], (const float *)w[3], (const float *)w[4],
                                   cos, sin, cache + l * c_l, c_s, c_c, c_m, row_start, kv_len, masked,
                                   rows, r_sb, r_st, positions, p_sb, p_st, scratch);
        if (status) return status;
    }
    rms_norm_rows(B * T, D, x, norm_w, norm_eps, out);
    if (store) store_hidden(B, T, D, out, rows, r_sb, r_st, positions, p_sb, p_st, store, s_sr, slots);
    return 0;
}
