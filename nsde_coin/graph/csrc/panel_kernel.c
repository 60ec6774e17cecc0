/* The panelled COIN base layer on the CPU, float32: a plain C library loaded with ctypes
 * (nsde_coin/graph/native.py), no Python or torch headers.  See nsde_coin/graph/sparse_base.py for the maths and
 * the panel layout; this file only fuses what torch runs as separate passes:
 *
 *   forward  (per column panel J of width k):  copy W1[:, J] into a contiguous d×k table (its rows then lie on few
 *            pages: gathering from the strided matrix directly was ~1.6x slower, TLB misses), then for each node v
 *            h_J[v] = ReLU(b1[J] + sum_e x_ve W1[col_e, J]) in registers, stored once (streamed past the caches
 *            when kept), and out[v] += W2[:, J] h_J[v] (on AVX-512, node v's dots overlap node v+1's gather:
 *            pipelined.h);
 *   backward (per panel):  gz_J = (g W2[:, J]) * [h_J > 0] and gW2[:, J] += g^T h_J in one pass over h_J (chunks of
 *            nodes, the W2 panel and the gW2 tile in registers), then [gW1[:, J]; gb1[J]] = x1^T gz_J as a gather
 *            from the n×k table gz_J, or (where that table would not fit in L2) as a scatter of each chunk's rows
 *            of gz_J along the rows of x1 into a (d+1)×k accumulator, right after pass 1.
 *            When the forward did not keep h (wide graphs), each chunk's rows of h_J are recomputed into L1 just
 *            before that pass, so h_J is never written to memory.
 *
 * Rows of x1 = [x | 1] end with the ones column (index d): the forward skips it and starts from b1 instead; the
 * last row of x1^T (all ones) gives gb1.  Sums run in the CSR order with VL-wide vector partial sums (the compile
 * flags allow reassociation), so results equal torch's to float32 rounding, not bit for bit.
 *
 * Vector code uses GCC/Clang vector extensions (VL floats).  This file is compiled once per instruction set by the
 * kernels_*.c wrappers (AVX-512, AVX2, baseline SSE2; entry points suffixed per kernel_common.h), and
 * nsde_coin/graph/native.py calls the build for the CPU it runs on (or the one NSDE_COIN_NATIVE_ISA names).
 * Both entry points split the panels over `threads` jobs (module.c's nsde_run_jobs), each with its own scratch. */
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

/* Floats per vector register this build is written for (the kernels_*.c wrappers set it: 16 for AVX-512, 8 for
 * AVX2, 4 for SSE2).  Every vector below is exactly one register: GCC keeps a generic vector wider than the
 * target's registers in memory (an AVX2 build of 16-float vectors ran 10x slower than the AVX-512 build). */
#ifndef NSDE_VL
#define NSDE_VL 16
#endif
#define VL NSDE_VL
typedef float vf __attribute__((vector_size(4 * VL)));
typedef int32_t vfi __attribute__((vector_size(4 * VL)));
typedef float vfu __attribute__((vector_size(4 * VL), aligned(4), may_alias));
#define LD(p) ((vf)(*(const vfu *)(p)))
#define ST(p, x) (*(vfu *)(p) = (x))
/* Streaming (non-temporal) store of one vector to a VL-float-aligned address, and the fence that orders such stores
 * before the thread reports done.  The forward writes the kept activations this way: a plain store first reads each
 * line of the n×d array it is about to overwrite (28 MB of traffic for Cora's 14 MB), and nothing reads them back
 * before the backward, by which time they have left the caches anyway.  Base forward 10-12 % faster on Cora,
 * CiteSeer and PubMed (AMD EPYC Zen 4, interleaved).  Chosen by the target's feature macros (a compiler that did
 * not take the wrapper's target pragma, e.g. clang, gets plain stores instead of a build error). */
#if (VL == 16 && defined(__AVX512F__)) || (VL == 8 && defined(__AVX__)) || (VL == 4 && defined(__SSE__))
#include <immintrin.h>
#if VL == 16
#define STREAM(p, x) _mm512_stream_ps((p), (__m512)(x))
#elif VL == 8
#define STREAM(p, x) _mm256_stream_ps((p), (__m256)(x))
#else
#define STREAM(p, x) _mm_stream_ps((p), (__m128)(x))
#endif
#define STREAM_FENCE() _mm_sfence()
#else
#define STREAM(p, x) ST(p, x)
#define STREAM_FENCE() ((void)0)
#endif
#ifndef BLK
#define BLK (VL >= 8 ? 64 : 32) /* columns gathered per register block: 4 (AVX-512) or 8 (AVX2, SSE2) vectors */
#endif
#define NB (BLK / VL)
#ifndef CHUNK
#define CHUNK 32 /* nodes per block of the backward first pass (CHUNK rows of h_J stay in L1) */
#endif

/* Nodes per chunk of the backward's first pass: the caller sizes the recomputation's scratch with it. */
API int64_t ENTRY(nsde_panel_chunk)(void) { return CHUNK; }

static inline __attribute__((always_inline)) int64_t row_end(const int32_t *off, int64_t i, int64_t rows, int64_t nnz) {
    return i + 1 < rows ? off[i + 1] : nnz;
}

static inline __attribute__((always_inline)) vf relu(vf a) { return (vf)((vfi)a & ~(a < 0)); } /* NaN stays */

/* dst[0..m) = (base ? base : 0) + sum_{e0 <= e < e1} vals[e] * tab[idx[e] * ld + 0..m), then ReLU if `rect` */
static inline __attribute__((always_inline)) void gather_block(int64_t m, const float *base, const int32_t *idx,
                                                               const float *vals, int64_t e0, int64_t e1,
                                                               const float *tab, int64_t ld, float *dst,
                                                               const int rect) {
    if (m == BLK) {
        vf a[NB];
        for (int q = 0; q < NB; q++) a[q] = base ? LD(base + q * VL) : (vf){0};
        for (int64_t e = e0; e < e1; e++) {
            const float w = vals[e];
            const float *r = tab + (int64_t)idx[e] * ld;
            for (int q = 0; q < NB; q++) a[q] += w * LD(r + q * VL);
        }
        for (int q = 0; q < NB; q++) ST(dst + q * VL, rect ? relu(a[q]) : a[q]);
        return;
    }
    int64_t t = 0;
    for (; t + VL <= m; t += VL) {
        vf a = {0};
        if (base) a = LD(base + t);
        for (int64_t e = e0; e < e1; e++) a += vals[e] * LD(tab + (int64_t)idx[e] * ld + t);
        ST(dst + t, rect ? relu(a) : a);
    }
    for (; t < m; t++) {
        float a = base ? base[t] : 0.f;
        for (int64_t e = e0; e < e1; e++) a += vals[e] * tab[(int64_t)idx[e] * ld + t];
        dst[t] = rect && a < 0.f ? 0.f : a;
    }
}

#include "out_dots.h"

/* Pass 1 of the backward for classes [c, c+M) of one VL-column block and one chunk of nodes [v0, v1) (hc, gzc:
 * the chunk's rows of h_J and gz_J, stride k): the M columns of W2 and the M accumulators of gW2 in registers (M
 * is a compile-time constant at each call). */
static inline __attribute__((always_inline)) void pass1_classes(const int M, int64_t c, int64_t C, int64_t d,
                                                                int64_t k, int64_t j0, int64_t t, int64_t v0,
                                                                int64_t v1, const float *g, const float *hc,
                                                                const float *W2, float *gzc, float *tile) {
    vf w[4], a[4];
    for (int q = 0; q < M; q++) { w[q] = LD(W2 + (c + q) * d + j0 + t); a[q] = LD(tile + (c + q) * k + t); }
    for (int64_t v = v0; v < v1; v++) {
        const float *gv = g + v * C + c;
        const vf hh = LD(hc + (v - v0) * k + t);
        vf z = c ? LD(gzc + (v - v0) * k + t) : (vf){0};
        for (int q = 0; q < M; q++) { z += gv[q] * w[q]; a[q] += gv[q] * hh; }
        ST(gzc + (v - v0) * k + t, z);
    }
    for (int q = 0; q < M; q++) ST(tile + (c + q) * k + t, a[q]);
}

#include "adam_row.h"
#include "residual.c"

#ifndef PF_MOMENTS /* Adam's moments, rows ahead: hardware prefetchers stop at each 4 KiB page (16 rows of a 64-col */
#define PF_MOMENTS 4 /* panel); backward 1.10-1.19x faster (AMD EPYC Zen 4), 2-16 rows ahead within 4 % of each other */
#endif
#ifndef PF_ROWS
#define PF_ROWS 8 /* rows ahead: a panel's rows of a d×d matrix lie d floats apart, beyond the hardware prefetchers */
#endif

/* prefetch k floats of one row of a d×d matrix (rw: 1 when the row will be written) */
static inline __attribute__((always_inline)) void prefetch_row(const float *row, int64_t k, const int rw) {
    for (int64_t t = 0; t < k; t += 16) {
        if (rw) __builtin_prefetch(row + t, 1, 3);
        else __builtin_prefetch(row + t, 0, 3);
    }
}

#include "pipelined.h"

static void pack_panel(int64_t d, int64_t j0, int64_t k, const float *W1, float *pack) {
    for (int64_t i = 0; i < d; i++) {
        if (i + PF_ROWS < d) prefetch_row(W1 + (i + PF_ROWS) * d + j0, k, 0);
        memcpy(pack + i * k, W1 + i * d + j0, (size_t)k * sizeof(float));
    }
}

/* h_J[v] = ReLU(b1[J] + x_v W1[:, J]) for nodes [v0, v1) into hc (their rows, stride k), from the packed panel */
static inline __attribute__((always_inline)) void hidden_rows(int64_t v0, int64_t v1, int64_t n, int64_t k,
                                                              int64_t j0, const int32_t *off, const int32_t *cols,
                                                              const float *vals, int64_t nnz, const float *b1,
                                                              const float *pack, float *hc) {
    for (int64_t v = v0; v < v1; v++) {
        const int64_t e0 = off[v], e1 = row_end(off, v, n, nnz) - 1; /* the row's last entry: the ones column */
        float *hv = hc + (v - v0) * k;
        for (int64_t t = 0; t < k; t += BLK)
            gather_block(k - t < BLK ? k - t : BLK, b1 + j0 + t, cols, vals, e0, e1, pack + t, k, hv + t, 1);
    }
}

/* acc[cols[e]][0..k) += vals[e] * z[0..k) for the entries [e0, e1) of one row of x1 (the scatter form of x1^T gz:
 * z, one node's row of gz_J, stays in registers for a BLK-column block) */
static inline __attribute__((always_inline)) void scatter_row(int64_t k, const float *z, const int32_t *cols,
                                                              const float *vals, int64_t e0, int64_t e1,
                                                              float *acc) {
    int64_t t = 0;
    for (; t + BLK <= k; t += BLK) {
        vf zz[NB];
        for (int q = 0; q < NB; q++) zz[q] = LD(z + t + q * VL);
        for (int64_t e = e0; e < e1; e++) {
            float *r = acc + (int64_t)cols[e] * k + t;
            const float w = vals[e];
            for (int q = 0; q < NB; q++) ST(r + q * VL, LD(r + q * VL) + w * zz[q]);
        }
    }
    for (; t + VL <= k; t += VL) {
        const vf z0 = LD(z + t);
        for (int64_t e = e0; e < e1; e++) {
            float *r = acc + (int64_t)cols[e] * k + t;
            ST(r, LD(r) + vals[e] * z0);
        }
    }
    for (; t < k; t++)
        for (int64_t e = e0; e < e1; e++) acc[(int64_t)cols[e] * k + t] += vals[e] * z[t];
}

/* One thread's share of the forward: panels first, first + step, ... (panel J's n×k block of h lies at offset
 * n·j0); out: this thread's (n, C) accumulator; pack: its (d + 1)×panel floats of scratch. */
struct fwd_job {
    int64_t n, d, C, panel, nnz, keep, first, step;
    const int32_t *off, *cols;
    const float *vals, *W1, *b1, *W2;
    float *h, *out, *pack;
};

static void *forward_panels(void *arg) {
    const struct fwd_job *a = arg;
    const int64_t n = a->n, d = a->d, C = a->C;
    float *pack = a->pack;
    for (int64_t j0 = a->first * a->panel; j0 < d; j0 += a->step * a->panel) {
        const int64_t k = d - j0 < a->panel ? d - j0 : a->panel;
        float *hp = a->keep ? a->h + n * j0 : NULL;
        pack_panel(d, j0, k, a->W1, pack);
        /* a kept row is built in L1 (the output layer reads it there) and streamed out; a panel whose rows are not
         * whole aligned vectors (the last, narrower one) is stored in place */
        const int stream = a->keep && k % VL == 0 && (uintptr_t)hp % (4 * VL) == 0;
#ifdef NSDE_PIPELINED
        if (pipelined_panel(k, C)) {
            forward_panel_pipelined(k, n, d, C, j0, a->off, a->cols, a->vals, a->nnz, a->b1, pack, a->W2, hp, stream,
                                    a->out);
            continue;
        }
#endif
        for (int64_t v = 0; v < n; v++) {
            float *hv = a->keep && !stream ? hp + v * k : pack + d * k;
            hidden_rows(v, v + 1, n, k, j0, a->off, a->cols, a->vals, a->nnz, a->b1, pack, hv);
            if (stream)
                for (int64_t t = 0; t < k; t += VL) STREAM(hp + v * k + t, LD(hv + t));
            for (int64_t c = 0; c < C; c += 8) {
                const float *w2 = a->W2 + c * d + j0;
                float *o = a->out + v * C + c;
                switch (C - c < 8 ? C - c : 8) {
                case 8: out_dots(8, hv, w2, d, k, o); break;
                case 7: out_dots(7, hv, w2, d, k, o); break;
                case 6: out_dots(6, hv, w2, d, k, o); break;
                case 5: out_dots(5, hv, w2, d, k, o); break;
                case 4: out_dots(4, hv, w2, d, k, o); break;
                case 3: out_dots(3, hv, w2, d, k, o); break;
                case 2: out_dots(2, hv, w2, d, k, o); break;
                default: out_dots(1, hv, w2, d, k, o); break;
                }
            }
        }
    }
    STREAM_FENCE();
    return NULL;
}

/* Forward over all panels of width `panel`: out (n×C, row-major) is accumulated into; keep != 0: h receives the
 * panels' n×k blocks of activations, back to back (otherwise h is not touched and the backward recomputes them).
 * pack: threads × (d + 1)×panel floats of scratch (per thread: the packed panel, then the row of h being built,
 * streamed out to h when kept).  threads > 1: thread t runs panels t, t + threads, ... (nsde_run_jobs); thread 0
 * adds into out, thread t > 0 into outx[(t - 1)·n·C ...) (zeroed here; (threads - 1)·n·C floats), added to out in
 * thread order after all have finished, so a result depends on the thread count (float rounding of out's sums) but
 * not on timing.  b2 != NULL: out is first set to x1 [W2^T; b2] (the residual branch and output bias; rwork:
 * nsde_residual_work(d + 1, C) floats), then accumulated into; b2 == NULL: rwork is not touched. */
API void ENTRY(nsde_panel_forward)(int64_t n, int64_t d, int64_t C, int64_t panel, const int32_t *off,
                                   const int32_t *cols, const float *vals, int64_t nnz, const float *W1,
                                   const float *b1, const float *W2, int64_t keep, float *h, float *out,
                                   float *pack, int64_t threads, float *outx, const float *b2, float *rwork) {
    const int64_t T = threads < 1 ? 1 : threads > NSDE_MAX_THREADS ? NSDE_MAX_THREADS : threads;
    if (b2) residual_forward(n, d, C, off, cols, vals, nnz, W2, b2, out, rwork); /* out = x1 [W2^T; b2] first */
    struct fwd_job jobs[NSDE_MAX_THREADS];
    for (int64_t t = 0; t < T; t++) {
        float *o = t ? outx + (t - 1) * n * C : out;
        if (t && n * C != 0) memset(o, 0, (size_t)(n * C) * sizeof(float)); /* n = 0: outx may be NULL */
        jobs[t] = (struct fwd_job){n, d, C, panel, nnz, keep, t, T, off, cols, vals, W1, b1, W2, h, o,
                                   pack + t * (d + 1) * panel};
    }
    nsde_run_jobs(forward_panels, jobs, sizeof(jobs[0]), T);
    for (int64_t t = 1; t < T; t++) {
        const float *o = outx + (t - 1) * n * C;
        for (int64_t i = 0; i < n * C; i++) out[i] += o[i];
    }
}

/* Backward over all panels: g (n×C), h as the forward left it; writes gW1[:, J] (d×d row-major), gb1[J] and
 * adds g^T h_J into gW2[:, J] (C×d).  tile: C×panel + panel floats of scratch.  gb2 != NULL: gW2 is first set to
 * the residual branch's (x^T g)^T and gb2 (C) to g's column sums (rwork: nsde_residual_work(n, C) +
 * nsde_residual_work(d + 1, C) floats); gb2 == NULL: gW2 is only added into and rwork is not touched.
 *
 * [gW1[:, J]; gb1[J]] = x1^T gz_J runs in one of two forms:
 *   scatter == 0: gather: gz (n×panel scratch) holds gz_J after pass 1, then each row of x1^T (toff, trows, tvals,
 *                tnnz) gathers rows of it (fast while the n×k table fits in L2); acc is not touched;
 *   scatter != 0: gz (CHUNK×panel scratch) holds one chunk's rows of gz_J, each added into acc
 *                ((d + 1)×panel scratch: the d×k panel of gW1 and gb1, which stay in L2 where n×k would not) along
 *                the rows of x1 (off, cols, vals, nnz, the forward's CSR, ones column included) right after pass 1.
 * keep == 0 (the forward kept no h): h_J is recomputed chunk by chunk from x (off, cols, vals, nnz), W1r and b1
 * into `pack` ((d + CHUNK) × panel floats of scratch: the packed panel, then the chunk's rows of h_J), so it never
 * leaves L1; with keep != 0, W1r, b1 and pack are not touched.  adam != 0 (with W1, its Adam moments M, V and
 * hyper-parameters hy, see adam_row): the rows of gW1[:, J] are not stored but each is applied to W1[:, J] while
 * in registers/L1 (Adam inside the backward pass; gW1 is not touched; W1r, the weights the forward used, is then W1
 * itself: panel J is recomputed before it is updated); adam == 0: W1, M, V and hy are not touched.  M and V are
 * stored panel by panel (panel J's d×k block at offset d·j0, row stride k): read in the order the panels are
 * computed, where the matrix layout would read them with a stride of d floats.
 * threads > 1: thread t runs panels t, t + threads, ... as in the forward; gz, tile, pack (when !keep) and acc
 * (when scatter) then hold `threads` blocks of the sizes above, one per thread.  Panels write disjoint columns of
 * gW1, gb1, gW2 and W1 and disjoint blocks of M and V, each panel's sums run as with one thread: the results do
 * not depend on the thread count. */
struct bwd_job {
    int64_t n, d, C, panel, tnnz, keep, adam, nnz, scatter, first, step;
    const int32_t *toff, *trows, *off, *cols;
    const float *tvals, *g, *h, *W2, *hy, *vals, *W1r, *b1;
    float *gz, *gW1, *gb1, *gW2, *tile, *W1, *M, *V, *pack, *acc;
};

/* One thread's share of the backward: panels first, first + step, ... with its own scratch (gz, tile, pack, acc);
 * panels write disjoint columns of gW1, gb1, gW2 and W1 and disjoint blocks of M and V. */
static void *backward_panels(void *arg) {
    const struct bwd_job *a = arg;
    const int64_t n = a->n, d = a->d, C = a->C, keep = a->keep, adam = a->adam, scatter = a->scatter, nnz = a->nnz,
                  tnnz = a->tnnz;
    const int32_t *toff = a->toff, *trows = a->trows, *off = a->off, *cols = a->cols;
    const float *tvals = a->tvals, *g = a->g, *W2 = a->W2, *hy = a->hy, *vals = a->vals, *b1 = a->b1;
    float *gz = a->gz, *gW1 = a->gW1, *gb1 = a->gb1, *gW2 = a->gW2, *tile = a->tile, *W1 = a->W1, *M = a->M,
          *V = a->V, *pack = a->pack, *acc = a->acc;
    for (int64_t j0 = a->first * a->panel; j0 < d; j0 += a->step * a->panel) {
        const int64_t k = d - j0 < a->panel ? d - j0 : a->panel;
        const int64_t kv = k - k % VL;
        const float *hp = keep ? a->h + n * j0 : NULL;
        if (!keep) pack_panel(d, j0, k, a->W1r, pack);
        if (scatter) memset(acc, 0, (size_t)((d + 1) * k) * sizeof(float));
        /* pass 1: chunks of CHUNK nodes (their rows of h_J and gz_J stay in L1), VL columns and 4 classes at a
         * time, so that the 4 W2 columns and the 4 accumulators of gW2 stay in registers over the chunk */
        memset(tile, 0, (size_t)(C * k) * sizeof(float));
        for (int64_t v0 = 0; v0 < n; v0 += CHUNK) {
            const int64_t v1 = v0 + CHUNK < n ? v0 + CHUNK : n;
            const float *hc = keep ? hp + v0 * k : pack + d * k;
            float *gzc = scatter ? gz : gz + v0 * k;
            if (!keep) hidden_rows(v0, v1, n, k, j0, off, cols, vals, nnz, b1, pack, pack + d * k);
            for (int64_t t = 0; t < kv; t += VL) {
                for (int64_t c = 0; c < C; c += 4) {
                    switch (C - c < 4 ? C - c : 4) {
                    case 4: pass1_classes(4, c, C, d, k, j0, t, v0, v1, g, hc, W2, gzc, tile); break;
                    case 3: pass1_classes(3, c, C, d, k, j0, t, v0, v1, g, hc, W2, gzc, tile); break;
                    case 2: pass1_classes(2, c, C, d, k, j0, t, v0, v1, g, hc, W2, gzc, tile); break;
                    default: pass1_classes(1, c, C, d, k, j0, t, v0, v1, g, hc, W2, gzc, tile); break;
                    }
                }
                for (int64_t v = v0; v < v1; v++) { /* the ReLU mask; prefetch the next chunk's block of h_J */
                    if (keep && t % 16 == 0 && v + CHUNK < n) /* one 64-byte line */
                        __builtin_prefetch(hp + (v + CHUNK) * k + t, 0, 2);
                    const vf hh = LD(hc + (v - v0) * k + t);
                    ST(gzc + (v - v0) * k + t, (vf)((vfi)LD(gzc + (v - v0) * k + t) & (hh > 0)));
                }
            }
            for (int64_t v = v0; v < v1; v++) { /* the panel's last k % VL columns */
                const float *gv = g + v * C;
                for (int64_t t = kv; t < k; t++) {
                    const float hh = hc[(v - v0) * k + t];
                    float z = 0.f;
                    for (int64_t c = 0; c < C; c++) { z += gv[c] * W2[c * d + j0 + t]; tile[c * k + t] += gv[c] * hh; }
                    gzc[(v - v0) * k + t] = hh > 0.f ? z : 0.f;
                }
            }
            if (scatter)
                for (int64_t v = v0; v < v1; v++)
                    scatter_row(k, gzc + (v - v0) * k, cols, vals, off[v], row_end(off, v, n, nnz), acc);
        }
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < k; t++) gW2[c * d + j0 + t] += tile[c * k + t];
        /* pass 2: [gW1[:, J]; gb1[J]] = x1^T gz_J (gathered here, or taken from acc) */
        for (int64_t i = 0; i <= d; i++) {
            float *o = i == d ? gb1 + j0 : adam ? tile + C * k : gW1 + i * d + j0;
            if (i + PF_ROWS < d) prefetch_row((adam ? W1 : gW1) + (i + PF_ROWS) * d + j0, k, 1);
            if (adam && i + PF_MOMENTS < d) { /* contiguous, but a page holds 16 of their rows at k = 64 */
                prefetch_row(M + d * j0 + (i + PF_MOMENTS) * k, k, 1);
                prefetch_row(V + d * j0 + (i + PF_MOMENTS) * k, k, 1);
            }
            if (scatter) {
                if (!(adam && i < d)) memcpy(o, acc + i * k, (size_t)k * sizeof(float));
            } else {
                const int64_t e0 = toff[i], e1 = row_end(toff, i, d + 1, tnnz);
                for (int64_t t = 0; t < k; t += BLK)
                    gather_block(k - t < BLK ? k - t : BLK, NULL, trows, tvals, e0, e1, gz + t, k, o + t, 0);
            }
            if (adam && i < d)
                adam_row(k, W1 + i * d + j0, M + d * j0 + i * k, V + d * j0 + i * k, scatter ? acc + i * k : o,
                         hy);
        }
    }
    return NULL;
}

API void ENTRY(nsde_panel_backward)(int64_t n, int64_t d, int64_t C, int64_t panel, const int32_t *toff,
                                    const int32_t *trows, const float *tvals, int64_t tnnz, const float *g,
                                    int64_t keep, const float *h, const float *W2, float *gz, float *gW1, float *gb1,
                                    float *gW2, float *tile, int64_t adam, float *W1, float *M, float *V,
                                    const float *hy, const int32_t *off, const int32_t *cols, const float *vals,
                                    int64_t nnz, const float *W1r, const float *b1, float *pack, int64_t scatter,
                                    float *acc, int64_t threads, float *gb2, float *rwork) {
    const int64_t T = threads < 1 ? 1 : threads > NSDE_MAX_THREADS ? NSDE_MAX_THREADS : threads;
    if (gb2) residual_backward(n, d, C, toff, trows, tvals, tnnz, g, gW2, gb2, rwork); /* gW2 = (x^T g)^T first */
    const int64_t gzn = (scatter ? CHUNK : n) * panel, tilen = (C + 1) * panel, packn = (d + CHUNK) * panel,
                  accn = (d + 1) * panel;
    struct bwd_job jobs[NSDE_MAX_THREADS];
    for (int64_t t = 0; t < T; t++)
        jobs[t] = (struct bwd_job){n, d, C, panel, tnnz, keep, adam, nnz, scatter, t, T, toff, trows, off, cols,
                                   tvals, g, h, W2, hy, vals, W1r, b1, gz + t * gzn, gW1, gb1, gW2,
                                   tile + t * tilen, W1, M, V, keep ? pack : pack + t * packn,
                                   scatter ? acc + t * accn : acc};
    nsde_run_jobs(backward_panels, jobs, sizeof(jobs[0]), T);
}
