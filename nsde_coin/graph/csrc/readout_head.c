/* The COIN head of the protocol's read-out training in one call each way, float32
 * (nsde_coin/graph/experiment/readout.py):
 *
 *   forward   lu = log max(u[rows], eps),  u = P^k u0,  u0 = softmax(logits) over each row's C classes;
 *   backward  g_logits = u0 * (g0 - <g0, u0>),  g0 = (P^T)^k s,  s[rows[i]] += g[i] / u[rows[i]] where u >= eps.
 *
 * torch runs this as ~20 small ops each way (a transposed copy for the softmax, the k steps, the row gather, clamp,
 * log and their autograd nodes); on Cora's (2485, 7) each op costs more in dispatch than in arithmetic.  The k steps
 * are nsde_csr_power's (csr_power.c, included before this file in the same translation unit).  The exponential is a
 * vector polynomial (Cody-Waite reduction, degree-7 Taylor on |r| <= ln2/2: truncation 6e-9, about 1 ulp with the
 * rounding of its steps), so results equal torch's to float32 rounding, not bit for bit.  NaN in the logits stays
 * NaN through to lu (the loss then reports it).
 *
 * Compiled per instruction set with the other kernels by the kernels_*.c wrappers (see kernel_common.h). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

#ifndef NSDE_VL
#define NSDE_VL 16
#endif
typedef float hv __attribute__((vector_size(4 * NSDE_VL)));
typedef int32_t hvi __attribute__((vector_size(4 * NSDE_VL)));
typedef uint32_t hvw __attribute__((vector_size(4 * NSDE_VL)));
typedef float hvu __attribute__((vector_size(4 * NSDE_VL), aligned(4), may_alias));
/* the exponential's reduction t - k ln2 in two steps must not be re-associated (the library's flags allow it) */
#if defined(__GNUC__) && !defined(__clang__)
#define EXACT_ORDER __attribute__((optimize("no-associative-math")))
#else
#define EXACT_ORDER
#endif

/* e^t for t <= 0 (t - max of a row); below -87.3 the result is 0 (float32 underflow); NaN stays NaN */
static EXACT_ORDER hv exp_neg(hv t) {
#if defined(__clang__)
#pragma clang fp reassociate(off)
#endif
    const hvi under = t < -87.3f; /* lanes that underflow: set to -87.3 here (NaN is not touched), to 0 at the end */
    t = (hv)(((hvi)t & ~under) | ((hvi)((hv){0} - 87.3f) & under));
    const hv tk = (hv)((hvi)t & (hvi)(t == t)); /* NaN lanes as 0 for the integer conversion (it stays in t) */
    const hv kf = __builtin_convertvector(__builtin_convertvector(tk * 1.44269504f - 0.5f, hvi), hv);
    const hv r = (t - kf * 0.693145752f) - kf * 1.42860677e-6f; /* ln2 split in two (Cody-Waite) */
    hv p = (hv){0} + 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const hvi scale = (hvi)((hvw)(__builtin_convertvector(kf, hvi) + 127) << 23); /* 2^k, k in [-126, 0] */
    return (hv)((hvi)(p * (hv)scale) & ~under);
}

/* u0 = softmax of each of the n rows of x (C floats each), into u0 (n x C); t: n x C floats of scratch */
static void softmax_rows(int64_t n, int64_t C, const float *x, float *u0, float *t) {
    const int64_t total = n * C;
    for (int64_t i = 0; i < n; i++) {
        float m = x[i * C];
        for (int64_t c = 1; c < C; c++) m = x[i * C + c] > m ? x[i * C + c] : m;
        const float nan = __builtin_nanf("");
        for (int64_t c = 0; c < C; c++) t[i * C + c] = m == m ? x[i * C + c] - m : nan; /* NaN first: all NaN */
    }
    int64_t j = 0;
    for (; j + NSDE_VL <= total; j += NSDE_VL) *(hvu *)(u0 + j) = exp_neg((hv)(*(const hvu *)(t + j)));
    if (j < total) { /* the last partial vector, through a padded copy */
        hv a = (hv){0} - 100.f;
        memcpy(&a, t + j, (size_t)(total - j) * sizeof(float));
        a = exp_neg(a);
        memcpy(u0 + j, &a, (size_t)(total - j) * sizeof(float));
    }
    for (int64_t i = 0; i < n; i++) {
        float s = 0.f;
        for (int64_t c = 0; c < C; c++) s += u0[i * C + c];
        const float inv = 1.f / s;
        for (int64_t c = 0; c < C; c++) u0[i * C + c] *= inv;
    }
}

/* Floats of scratch nsde_readout_forward / _backward need for n x C (the caller sizes `work` with this). */
API int64_t ENTRY(nsde_readout_work)(int64_t n, int64_t C) { return n * C + ENTRY(nsde_csr_power_work)(n, C); }

/* 0 when every one of the m rows lies in [0, n), else 1 + the position of the first that does not */
static int64_t bad_row(int64_t n, int64_t m, const int64_t *rows) {
    for (int64_t i = 0; i < m; i++)
        if (rows[i] < 0 || rows[i] >= n) return i + 1;
    return 0;
}

/* Forward: logits (n x C) -> u0 (n x C, kept for the backward), ur = u[rows] (m x C, kept) and lu (m x C).
 * P: CSR (crow, col, val; n x n, int64 indices), k >= 1 steps; rows: m indices; work: see above.  Returns 0, or
 * (nothing computed) 1 + the position of the first row outside [0, n). */
API int64_t ENTRY(nsde_readout_forward)(int64_t n, int64_t C, int64_t k, const int64_t *crow, const int64_t *col,
                                     const float *val, const float *logits, int64_t m, const int64_t *rows,
                                     float eps, float *u0, float *ur, float *lu, float *work) {
    const int64_t bad = bad_row(n, m, rows);
    if (bad) return bad;
    float *u = work, *scratch = work + n * C;
    softmax_rows(n, C, logits, u0, u);
    ENTRY(nsde_csr_power)(n, C, k, crow, col, val, u0, u, scratch);
    for (int64_t i = 0; i < m; i++) {
        const float *src = u + rows[i] * C;
        for (int64_t c = 0; c < C; c++) {
            const float v = src[c];
            ur[i * C + c] = v;
            lu[i * C + c] = logf(v >= eps ? v : v != v ? v : eps); /* log max(u, eps); NaN stays */
        }
    }
    return 0;
}

/* Backward: g (m x C, the gradient of lu) -> g_logits (n x C).  P^T: CSR (crow_t, col_t, val_t); u0, ur as the
 * forward left them; rows may repeat (their gradients add).  Returns as the forward does. */
API int64_t ENTRY(nsde_readout_backward)(int64_t n, int64_t C, int64_t k, const int64_t *crow_t, const int64_t *col_t,
                                      const float *val_t, const float *g, int64_t m, const int64_t *rows, float eps,
                                      const float *u0, const float *ur, float *g_logits, float *work) {
    const int64_t bad = bad_row(n, m, rows);
    if (bad) return bad;
    float *s = work, *scratch = work + n * C;
    memset(s, 0, (size_t)(n * C) * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < C; c++) {
            const float v = ur[i * C + c];
            if (v >= eps) s[rows[i] * C + c] += g[i * C + c] / v; /* clamp_min passes the gradient where u >= eps */
        }
    ENTRY(nsde_csr_power)(n, C, k, crow_t, col_t, val_t, s, s, scratch); /* in place: csr_power allows it */
    for (int64_t i = 0; i < n; i++) {
        float dot = 0.f;
        for (int64_t c = 0; c < C; c++) dot += s[i * C + c] * u0[i * C + c];
        for (int64_t c = 0; c < C; c++) g_logits[i * C + c] = u0[i * C + c] * (s[i * C + c] - dot);
    }
    return 0;
}
