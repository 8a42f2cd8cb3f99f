/* Y[M, N] = C[M, N] + X[M, K] @ W[K, N] (C optional) for the small row counts of decoding,
 * verifying and drafting on CPU, fp32, AVX-512F.
 *
 * Why not MKL's sgemm: at 1-16 rows its time grows with the row count long before the product
 * is compute bound (the zoo's 192 -> 1152 projection: 17 us at 1 row, 73 us at 9), which makes a
 * speculative verify of k + 1 tokens cost ~2 decode steps. Here W is packed once into panels of
 * 32 columns ([panel][K][32], zero padded); a block of up to 12 rows keeps 2 x 12 accumulators in
 * registers, and every block of rows reads a panel while it is in cache.
 *
 * Every output row is the same sequence of FMAs whatever M is (k ascending, one accumulator per
 * row and column), so a row's result does not depend on which other rows share the call: a
 * verify step reproduces a decode step's numbers bit for bit. */
#include <immintrin.h>
#include <stddef.h>

#ifndef __AVX512F__
#error "small_gemm needs AVX-512F"
#endif

#define MAX_BLOCK 12

static inline __attribute__((always_inline)) void block(const int rows, int K, const float *x, long ldx,
                                                        const float *panel, const float *c, long ldc,
                                                        float *y, long ldy, __mmask16 m0, __mmask16 m1) {
    __m512 acc0[MAX_BLOCK], acc1[MAX_BLOCK];
    for (int m = 0; m < rows; m++) {
        if (c) {
            acc0[m] = _mm512_maskz_loadu_ps(m0, c + m * ldc);
            acc1[m] = _mm512_maskz_loadu_ps(m1, c + m * ldc + 16);
        } else {
            acc0[m] = _mm512_setzero_ps();
            acc1[m] = _mm512_setzero_ps();
        }
    }
    for (int k = 0; k < K; k++) {
        __m512 w0 = _mm512_loadu_ps(panel + (size_t)k * 32);
        __m512 w1 = _mm512_loadu_ps(panel + (size_t)k * 32 + 16);
        for (int m = 0; m < rows; m++) {
            __m512 xb = _mm512_set1_ps(x[m * ldx + k]);
            acc0[m] = _mm512_fmadd_ps(xb, w0, acc0[m]);
            acc1[m] = _mm512_fmadd_ps(xb, w1, acc1[m]);
        }
    }
    for (int m = 0; m < rows; m++) {
        _mm512_mask_storeu_ps(y + m * ldy, m0, acc0[m]);
        _mm512_mask_storeu_ps(y + m * ldy + 16, m1, acc1[m]);
    }
}

/* The row count is a compile-time constant in each case, so the accumulators live in registers. */
#define ROWS(R) case R: block(R, K, x + r * ldx, ldx, panel, cp ? cp + r * ldc : 0, ldc, y + r * ldy + p * 32, ldy, \
                              m0, m1); break;

void small_gemm(int M, int N, int K, const float *x, long ldx, const float *packed, const float *c, long ldc,
                float *y, long ldy) {
    int panels = (N + 31) / 32;
    /* Panels outside, row blocks inside: a panel (K x 32 floats, 24-72 KB here) stays in cache while
     * every block of rows reads it, so W streams from memory once per call whatever M is. */
    for (int p = 0; p < panels; p++) {
        const float *panel = packed + (size_t)p * K * 32;
        const float *cp = c ? c + p * 32 : 0;
        int left = N - p * 32;
        __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        for (long r = 0; r < M; r += MAX_BLOCK) {
            int rows = M - r < MAX_BLOCK ? (int)(M - r) : MAX_BLOCK;
            switch (rows) { ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10)
                            ROWS(11) ROWS(12) }
        }
    }
}
