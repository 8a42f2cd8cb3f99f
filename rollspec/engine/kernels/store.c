/* What a step leaves for the next ones: the policy's final hidden state at each processed position, for
 * drafters that read them (written by decoder_forward, whose output it is), and the token that follows
 * each position (Engine._store). Through torch these were two index_put_ calls, ~30 us a decode step at
 * B = 64, most of it the hidden states' scattered 768-byte rows, plus ~30 us an admission for the prompts'. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* dst = src, D floats. Aligned rows of whole cache lines go by non-temporal stores: a stored row is read
 * again only by a later catch-up, so reading its lines in first (and evicting the policy's weights and
 * KV rows for them) is wasted; in-engine this measured ~20-40% cheaper than memcpy. Returns 1 if it
 * streamed (the caller fences). */
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

static void fence(int streamed) {
#ifdef __AVX512F__
    if (streamed) _mm_sfence();  /* order the streamed rows before any later store */
#else
    (void)streamed;
#endif
}

/* A forward's final hidden states hidden [B * T, D] into the store: token (b, t), at cache row
 * rows[b * r_sb + t * r_st] and position positions[b * p_sb + t * p_st] (both as the forward wrote its
 * keys and values), goes to store[slots[row] * s_sr + position * D]. */
void store_hidden(int B, int T, int D, const float *hidden, const int64_t *rows, long r_sb, long r_st,
                  const int64_t *positions, long p_sb, long p_st, float *store, long s_sr, const int64_t *slots) {
    int streamed = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t row = rows[b * r_sb + t * r_st], p = positions[b * p_sb + t * p_st];
            streamed |= stream_row(store + slots[row] * s_sr + p * D, hidden + ((size_t)b * T + t) * D, D);
        }
    fence(streamed);
}

/* store[to_slot][:length] = store[from_slot][:length] (a prompt shared without a prefill). */
void copy_states(int D, float *store, long s_sr, long from_slot, long to_slot, int length) {
    int streamed = 0;
    for (long t = 0; t < length; t++)
        streamed |= stream_row(store + to_slot * s_sr + t * D, store + from_slot * s_sr + t * D, D);
    fence(streamed);
}

/* Rows row_start .. row_start + B - 1, T processed positions each at positions[b * p_sb + t * p_st]:
 * tokens[row * t_sr + position + 1] = next[b, t] (next [B, T]; tokens has M columns). Checks every
 * position first and returns -1, writing nothing, if a token would fall outside [0, M), where torch's
 * indexing would raise; else 0. */
int store_tokens(int B, int T, int row_start, const int64_t *positions, long p_sb, long p_st,
                 const int64_t *next, int64_t *tokens, long t_sr, int M) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int64_t p = positions[b * p_sb + t * p_st];
            if (p < 0 || p + 1 >= M) return -1;
        }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tokens[(row_start + b) * t_sr + positions[b * p_sb + t * p_st] + 1] = next[(size_t)b * T + t];
    return 0;
}
