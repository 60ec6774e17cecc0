/* k explicit diffusion steps u <- P u in one call, float32, for a CSR matrix P (n x n, int64 indices as torch keeps
 * them) and a dense row-major u (n x m): the explicit graph solver's whole propagation (nsde_coin/graph/sparse.py).
 *
 * torch runs each step as a separate sparse matmul; on Cora (12.6k non-zeros, 7 classes) that call costs ~40 us, most
 * of it converting the int64 indices to int32 for MKL on every step, while the product itself is ~13k multiply-adds.
 * Here all k steps run back to back on one zero-padded copy of u whose rows are a multiple of 8 floats, ping-ponging
 * between two n x stride buffers (Cora: 2 x 159 KB, in L2), so each non-zero is one 8-wide multiply-add per block of
 * columns; the padding columns stay zero.  Results equal torch's to float32 rounding (the compile flags allow the
 * sums to be reassociated), not bit for bit.
 *
 * Compiled per instruction set with panel_kernel.c by the kernels_*.c wrappers (see kernel_common.h). */
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define LD8(p) ((v8)(*(const v8u *)(p)))
#define ST8(p, x) (*(v8u *)(p) = (x))

/* dst = P src over rows [0, n) of n x s buffers (s: the padded row stride, a multiple of 8) */
static inline __attribute__((always_inline)) void csr_step(int64_t n, int64_t s, const int64_t *crow,
                                                           const int64_t *col, const float *val, const float *src,
                                                           float *dst) {
    if (s == 8) { /* the common case (up to 8 classes): one vector per row, kept in a register */
        for (int64_t i = 0; i < n; i++) {
            v8 a = {0}, b = {0}; /* two chains: rows are short (Cora: ~5 entries), FMA latency dominates */
            const int64_t e1 = crow[i + 1];
            int64_t e = crow[i];
            for (; e + 1 < e1; e += 2) {
                a += val[e] * LD8(src + col[e] * 8);
                b += val[e + 1] * LD8(src + col[e + 1] * 8);
            }
            if (e < e1) a += val[e] * LD8(src + col[e] * 8);
            ST8(dst + i * 8, a + b);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < s; t += 8) {
            v8 a = {0};
            for (int64_t e = crow[i]; e < crow[i + 1]; e++) a += val[e] * LD8(src + col[e] * s + t);
            ST8(dst + i * s + t, a);
        }
    }
}

/* out = P^k u.  u, out: n x m row-major (may be the same array); work: 2 * n * stride floats of scratch with
 * stride = m rounded up to a multiple of 8.  k >= 1. */
API void ENTRY(nsde_csr_power)(int64_t n, int64_t m, int64_t k, const int64_t *crow, const int64_t *col,
                               const float *val, const float *u, float *out, float *work) {
    const int64_t s = (m + 7) / 8 * 8;
    float *a = work, *b = work + n * s;
    memset(a, 0, (size_t)(n * s) * sizeof(float));
    for (int64_t i = 0; i < n; i++) memcpy(a + i * s, u + i * m, (size_t)m * sizeof(float));
    for (int64_t step = 0; step < k; step++) {
        csr_step(n, s, crow, col, val, a, b);
        float *t = a;
        a = b;
        b = t;
    }
    for (int64_t i = 0; i < n; i++) memcpy(out + i * m, a + i * s, (size_t)m * sizeof(float));
}
