/* k explicit diffusion steps u <- P u in one call, float32, for a CSR matrix P (n x n, int64 indices as torch keeps
 * them) and a dense row-major u (n x m): the explicit graph solver's whole propagation (nsde_coin/graph/sparse.py).
 *
 * torch runs each step as a separate sparse matmul; on Cora (12.6k non-zeros, 7 classes) that call costs ~40 us, most
 * of it converting the int64 indices to int32 for MKL on every step, while the product itself is ~13k multiply-adds.
 * Here all k steps run back to back on a zero-padded copy of (a panel of up to 32 columns of) u whose rows hold 8, 16
 * or 32 floats, ping-ponging between two n x W buffers (Cora, 7 classes: 2 x 80 KB, in L2), so each non-zero is
 * one multiply-add per vector of the row; the padding columns stay zero.  Results equal torch's to float32 rounding
 * (the compile flags allow the sums to be reassociated), not bit for bit.
 *
 * Compiled per instruction set with panel_kernel.c by the kernels_*.c wrappers (see kernel_common.h). */
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

#ifndef NSDE_VL
#define NSDE_VL 16
#endif
/* floats per vector here (one register: 8 on AVX2 and AVX-512, 4 on SSE2); buffer rows hold 8, 16 or 32 floats */
#define RW (NSDE_VL >= 8 ? 8 : 4)
typedef float vr __attribute__((vector_size(4 * RW)));
typedef float vru __attribute__((vector_size(4 * RW), aligned(4), may_alias));
#define LDR(p) ((vr)(*(const vru *)(p)))
#define STR(p, x) (*(vru *)(p) = (x))

/* dst = P src over rows [0, n) of n x W buffers (W = 8, 16 or 32 floats per row, a compile-time constant at each
 * call): each row's W floats stay in registers over its non-zeros (two chains: rows are short, Cora ~5 entries, so
 * FMA latency dominates) */
static inline __attribute__((always_inline)) void csr_step(const int W, int64_t n, const int64_t *crow,
                                                           const int64_t *col, const float *val, const float *src,
                                                           float *dst) {
    const int nr = W / RW;
    for (int64_t i = 0; i < n; i++) {
        vr a[32 / RW], b[32 / RW];
        for (int q = 0; q < nr; q++) a[q] = b[q] = (vr){0};
        const int64_t e1 = crow[i + 1];
        int64_t e = crow[i];
        for (; e + 1 < e1; e += 2) {
            const float *s0 = src + col[e] * W, *s1 = src + col[e + 1] * W;
            for (int q = 0; q < nr; q++) {
                a[q] += val[e] * LDR(s0 + q * RW);
                b[q] += val[e + 1] * LDR(s1 + q * RW);
            }
        }
        if (e < e1)
            for (int q = 0; q < nr; q++) a[q] += val[e] * LDR(src + col[e] * W + q * RW);
        for (int q = 0; q < nr; q++) STR(dst + i * W + q * RW, a[q] + b[q]);
    }
}

/* k steps on columns [j0, j0 + w) of u into the same columns of out, in two n x W buffers (w <= W; the padding
 * columns stay zero) */
static inline __attribute__((always_inline)) void panel_power(const int W, int64_t n, int64_t m, int64_t j0, int64_t w,
                                                              int64_t k, const int64_t *crow, const int64_t *col,
                                                              const float *val, const float *u, float *out,
                                                              float *work) {
    float *a = work, *b = work + n * W;
    memset(a, 0, (size_t)(n * W) * sizeof(float));
    for (int64_t i = 0; i < n; i++) memcpy(a + i * W, u + i * m + j0, (size_t)w * sizeof(float));
    for (int64_t step = 0; step < k; step++) {
        csr_step(W, n, crow, col, val, a, b);
        float *t = a;
        a = b;
        b = t;
    }
    for (int64_t i = 0; i < n; i++) memcpy(out + i * m + j0, a + i * W, (size_t)w * sizeof(float));
}

/* buffer row width W for a panel of w columns: 8, 16 or 32 floats */
static inline int64_t panel_row(int64_t w) { return w <= 8 ? 8 : w <= 16 ? 16 : 32; }

/* Floats of scratch nsde_csr_power needs for an n x m u: two n x W panel buffers for its widest panel (the caller
 * sizes `work` with this, so the rule lives here only). */
API int64_t ENTRY(nsde_csr_power_work)(int64_t n, int64_t m) { return 2 * n * panel_row(m < 32 ? m : 32); }

/* out = P^k u.  u, out: n x m row-major (may be the same array); work: nsde_csr_power_work(n, m) floats of
 * scratch.  k >= 1.  The columns evolve independently, so a wide u runs as panels of 32 columns, each through all k
 * steps: Coauthor Physics' read-out (34493 x 250) then gathers from two 34493 x 32 buffers (8.8 MB, in L3) where it
 * gathered 32 bytes per non-zero and column block from the whole 35 MB u. */
API void ENTRY(nsde_csr_power)(int64_t n, int64_t m, int64_t k, const int64_t *crow, const int64_t *col,
                               const float *val, const float *u, float *out, float *work) {
    for (int64_t j0 = 0; j0 < m; j0 += 32) {
        const int64_t w = m - j0 < 32 ? m - j0 : 32;
        switch (panel_row(w)) {
        case 8: panel_power(8, n, m, j0, w, k, crow, col, val, u, out, work); break;
        case 16: panel_power(16, n, m, j0, w, k, crow, col, val, u, out, work); break;
        default: panel_power(32, n, m, j0, w, k, crow, col, val, u, out, work); break;
        }
    }
}
