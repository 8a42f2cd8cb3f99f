/* What a step leaves for the next ones, in one call (Engine._store): the token that follows each
 * processed position, and for drafters that read them the policy's hidden state at the position;
 * and an admission's prompt states (HiddenStore.write_prompts). As two torch index_put_ calls a
 * decode step's cost ~30 us at B = 64, most of it the hidden states' scattered 768-byte rows. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* dst = src, D floats. Aligned rows of whole cache lines go by non-temporal stores: a stored row
 * is read again only by a later catch-up, so reading its lines in first (and evicting the policy's
 * weights for them) is wasted. */
static int stream_row(float *dst, const float *src, int D) {
#ifdef __AVX512F__
    if (((uintptr_t)dst & 63) == 0 && D % 16 == 0) {
        for (int i = 0; i < D; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
        return 1;
    }
#endif
    memcpy(dst, src, sizeof(float) * (size_t)D);
    return 0;
}

/* Rows row_start .. row_start + B - 1, T processed positions each at positions[b * p_sb + t * p_st].
 * next [B, T]: tokens[row * t_sr + position + 1] = next[b, t] (tokens has M columns).
 * hidden [B * T, D] (NULL: no store): store[slots[row] * s_sr + position * D .. + D] = its row (store
 * has M positions a slot). Checks every position first and returns -1, writing nothing, if one or the
 * token after it falls outside [0, M), where torch's indexing would raise; else 0. */
int store_step(int B, int T, int D, int row_start, const int64_t *positions, long p_sb, long p_st,
               const int64_t *next, int64_t *tokens, long t_sr, int M,
               const float *hidden, float *store, long s_sr, const int64_t *slots) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int64_t p = positions[b * p_sb + t * p_st];
            if (p < 0 || p + 1 >= M) return -1;
        }
    int streamed = 0;
    for (int b = 0; b < B; b++) {
        const int64_t row = row_start + b;
        for (int t = 0; t < T; t++) {
            const int64_t p = positions[b * p_sb + t * p_st];
            tokens[row * t_sr + p + 1] = next[(size_t)b * T + t];
            if (hidden)
                streamed |= stream_row(store + slots[row] * s_sr + p * D, hidden + ((size_t)b * T + t) * D, D);
        }
    }
#ifdef __AVX512F__
    if (streamed) _mm_sfence();  /* order the streamed rows before any later store */
#endif
    return 0;
}

/* An admission's prompts: row row_start + b gets the states of its first lens[b] positions from row src[b] of
 * a prefill's output hidden [*, T, D] (src[b] < 0: nothing, its prompt is copied from a live row elsewhere).
 * Rows that share a prompt read it from the output just computed rather than from another row's slot, and
 * positions past a row's prompt, which the decode overwrites before anything reads them, are not written. */
void store_prompts(int B, int T, int D, int row_start, const int64_t *src, const int64_t *lens,
                   const float *hidden, float *store, long s_sr, const int64_t *slots) {
    int streamed = 0;
    for (int b = 0; b < B; b++) {
        if (src[b] < 0) continue;
        float *dst = store + slots[row_start + b] * s_sr;
        const float *from = hidden + (size_t)src[b] * T * D;
        for (int64_t t = 0; t < lens[b] && t < T; t++)
            streamed |= stream_row(dst + t * D, from + t * D, D);
    }
#ifdef __AVX512F__
    if (streamed) _mm_sfence();
#endif
}
