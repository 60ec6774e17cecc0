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

#ifndef NSDE_VL
#define NSDE_VL 16
#endif
/* floats per vector here (one register: 8 on AVX2 and AVX-512, 4 on SSE2); rows are padded to multiples of 8 */
#define RW (NSDE_VL >= 8 ? 8 : 4)
#define NR (8 / RW)
typedef float vr __attribute__((vector_size(4 * RW)));
typedef float vru __attribute__((vector_size(4 * RW), aligned(4), may_alias));
#define LDR(p) ((vr)(*(const vru *)(p)))
#define STR(p, x) (*(vru *)(p) = (x))

/* dst = P src over rows [0, n) of n x s buffers (s: the padded row stride, a multiple of 8) */
static inline __attribute__((always_inline)) void csr_step(int64_t n, int64_t s, const int64_t *crow,
                                                           const int64_t *col, const float *val, const float *src,
                                                           float *dst) {
    if (s == 8) { /* the common case (up to 8 classes): one row of 8 floats per node, kept in registers */
        for (int64_t i = 0; i < n; i++) {
            vr a[NR], b[NR]; /* two chains: rows are short (Cora: ~5 entries), FMA latency dominates */
            for (int q = 0; q < NR; q++) a[q] = b[q] = (vr){0};
            const int64_t e1 = crow[i + 1];
            int64_t e = crow[i];
            for (; e + 1 < e1; e += 2)
                for (int q = 0; q < NR; q++) {
                    a[q] += val[e] * LDR(src + col[e] * 8 + q * RW);
                    b[q] += val[e + 1] * LDR(src + col[e + 1] * 8 + q * RW);
                }
            if (e < e1)
                for (int q = 0; q < NR; q++) a[q] += val[e] * LDR(src + col[e] * 8 + q * RW);
            for (int q = 0; q < NR; q++) STR(dst + i * 8 + q * RW, a[q] + b[q]);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < s; t += RW) {
            vr a = {0};
            for (int64_t e = crow[i]; e < crow[i + 1]; e++) a += val[e] * LDR(src + col[e] * s + t);
            STR(dst + i * s + t, a);
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
