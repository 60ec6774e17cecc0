/* The software-pipelined forward of the panel kernel for AVX-512 builds (VL == 16: its 32 vector registers hold
 * both sets of accumulators), for panel_kernel.c.  It overlaps the L2-bound gather of one node's row of h with the
 * output-layer dots of the previous node, FMA work that the gather would otherwise wait behind (the out-of-order
 * window does not reach across a whole row's gather by itself).  Same sums in the same order as the plain loop, so
 * results are equal bit for bit.  Measured on Cora (AMD EPYC Zen 4, 1 thread, the kernel calls alone, interleaved):
 * base forward 5.2-6.1 -> 4.5-5.7 ms.  The same overlap in the backward's second pass (row i's gather of x1^T gz with
 * row i-1's Adam step, one vector per gather iteration or the whole row after 0-4 iterations) made it 7-15 % slower,
 * and was dropped.
 *
 * Included by panel_kernel.c after its vector types, relu, row_end, dots_reduce (out_dots.h) and STREAM are defined;
 * not a separate translation unit.  It runs for panels of BLK or 2·BLK columns (64 or 128: the EPYC's and the Xeon's
 * Cora panels) and 1-8 classes; narrower builds (and a compiler that did not take the AVX-512 target), the narrow
 * last panel and more classes keep the plain loop (forward_panels). */
#if VL == 16 && defined(__AVX512F__) && !defined(NSDE_NO_PIPELINE)
#define NSDE_PIPELINED 1

/* The forward of one full-width panel (k = NV·VL columns, NV = 4 or 8: BLK or 2·BLK) for 1 <= M = C <= 8 classes:
 * node v's output-layer dots (out_dots' M FMA chains over the k columns, in the same order) ride in the first NV
 * iterations of node v+1's gather, which waits on L2 while the dots keep the FMA units busy; the rows of h alternate
 * between two L1 buffers.  The gather keeps all NV vectors of the row in registers over the row's non-zeros, where
 * the plain loop runs one BLK-column block at a time: each vector's sum still adds the same terms in the same
 * order.  Results equal the plain loop's bit for bit.  hp: the panel's kept n×k block (NULL: not kept); stream:
 * write it with streaming stores. */
static inline __attribute__((always_inline)) void panel_rows_pipelined(const int NV, const int M, int64_t n,
                                                                       int64_t d, int64_t C, int64_t j0,
                                                                       const int32_t *off, const int32_t *cols,
                                                                       const float *vals, int64_t nnz,
                                                                       const float *b1, const float *pack,
                                                                       const float *W2, float *hp, const int stream,
                                                                       float *out) {
    const int64_t k = NV * VL;
    float buf[2][2 * BLK] __attribute__((aligned(64)));
    const float *w2 = W2 + j0, *base = b1 + j0;
    static const float zero_tail[8] = {0};
    for (int64_t v = 0; v <= n; v++) {
        float *cur = buf[v & 1];
        const float *prev = buf[(v + 1) & 1]; /* node v - 1's row */
        vf s[8];
        for (int c = 0; c < 8; c++) s[c] = (vf){0};
        int q = 0;
        if (v < n) {
            const int64_t e1 = row_end(off, v, n, nnz) - 1; /* the row's last entry: the ones column */
            int64_t e = off[v];
            vf a[8];
            for (int t = 0; t < NV; t++) a[t] = LD(base + t * VL);
            if (v > 0)
                for (; e < e1 && q < NV; e++, q++) {
                    const float w = vals[e];
                    const float *r = pack + (int64_t)cols[e] * k;
                    for (int t = 0; t < NV; t++) a[t] += w * LD(r + t * VL);
                    const vf hq = LD(prev + q * VL);
                    for (int c = 0; c < M; c++) s[c] += hq * LD(w2 + c * d + q * VL);
                }
            for (; e < e1; e++) {
                const float w = vals[e];
                const float *r = pack + (int64_t)cols[e] * k;
                for (int t = 0; t < NV; t++) a[t] += w * LD(r + t * VL);
            }
            for (int t = 0; t < NV; t++) ST(cur + t * VL, relu(a[t]));
            if (hp)
                for (int t = 0; t < NV; t++) {
                    if (stream) STREAM(hp + v * k + t * VL, LD(cur + t * VL));
                    else ST(hp + v * k + t * VL, LD(cur + t * VL));
                }
        }
        if (v > 0) {
            for (; q < NV; q++) {
                const vf hq = LD(prev + q * VL);
                for (int c = 0; c < M; c++) s[c] += hq * LD(w2 + c * d + q * VL);
            }
            dots_reduce(M, s, zero_tail, out + (v - 1) * C);
        }
    }
}

/* Whether forward_panel_pipelined takes a panel of k columns with C classes */
static inline int pipelined_panel(int64_t k, int64_t C) { return (k == BLK || k == 2 * BLK) && C >= 1 && C <= 8; }

/* panel_rows_pipelined for the panel width and class count at hand (compile-time counts of vectors and FMA chains
 * in each case); only for pipelined_panel(k, C) */
static void forward_panel_pipelined(int64_t k, int64_t n, int64_t d, int64_t C, int64_t j0, const int32_t *off,
                                    const int32_t *cols, const float *vals, int64_t nnz, const float *b1,
                                    const float *pack, const float *W2, float *hp, const int stream, float *out) {
#define ROWS(NV, M) panel_rows_pipelined(NV, M, n, d, C, j0, off, cols, vals, nnz, b1, pack, W2, hp, stream, out)
#define CLASSES(NV)                                                                                            \
    switch (C) {                                                                                               \
    case 8: ROWS(NV, 8); break;                                                                                \
    case 7: ROWS(NV, 7); break;                                                                                \
    case 6: ROWS(NV, 6); break;                                                                                \
    case 5: ROWS(NV, 5); break;                                                                                \
    case 4: ROWS(NV, 4); break;                                                                                \
    case 3: ROWS(NV, 3); break;                                                                                \
    case 2: ROWS(NV, 2); break;                                                                                \
    default: ROWS(NV, 1); break;                                                                               \
    }
    if (k == BLK) {
        CLASSES(BLK / VL)
    } else {
        CLASSES(2 * BLK / VL)
    }
#undef CLASSES
#undef ROWS
}
#endif
