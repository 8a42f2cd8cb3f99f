/* AttentionBatch's metadata for the C draft chains (eagle_chain.c, draft_chain.c), computed where they
 * loop instead of once per step in Python. */
#include <stdint.h>

/* rows[b] = row_start + b for B rows; the shortest and longest of their lens (rows differ in length,
 * so attention is masked, when they differ). */
void batch_extent(int B, int row_start, const int64_t *lens, int64_t *rows, int64_t *shortest, int64_t *longest) {
    *shortest = lens[0];
    *longest = 0;
    for (int b = 0; b < B; b++) {
        rows[b] = row_start + b;
        if (lens[b] > *longest) *longest = lens[b];
        if (lens[b] < *shortest) *shortest = lens[b];
    }
}

/* Step j of a chain of one-token steps from lens (AttentionBatch.chain): each row's cache position,
 * clamped onto the cache's last position, into positions; returns the number of keys attended. */
int chain_step(int B, int j, const int64_t *lens, int64_t longest, int max_len, int64_t *positions) {
    for (int b = 0; b < B; b++) {
        int64_t pos = lens[b] + j;
        positions[b] = pos < max_len - 1 ? pos : max_len - 1;
    }
    int64_t kv_len = longest + 1 + j;
    return kv_len < max_len ? (int)kv_len : max_len;
}
