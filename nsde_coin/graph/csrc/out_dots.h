/* out_dots, the output layer's dot products of one row of h_J with up to 8 rows of W2, for panel_kernel.c, and its
 * reduction dots_reduce (one tree of two-input shuffles per vector width, VL 16, 8, 4 floats).  Included by
 * panel_kernel.c after its vector types (vf, vfi, LD) and VL are defined; not a separate translation unit. */
#if defined(__clang__)
#define SHUF2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF2(a, b, ...) __builtin_shuffle(a, b, (vfi){__VA_ARGS__})
#endif

/* o[c] += (the lanes of s[c] summed) + tail[c] for the M <= 8 classes of one group: all 8 vector partial sums
 * reduced together by a tree of two-input shuffles (AVX-512: 23 vector operations for 8 sums where 8 separate
 * horizontal sums took 64), with no long dependency chain per class; s[c] for c >= M must be zero. */
static inline __attribute__((always_inline)) void dots_reduce(const int M, const vf *s, const float *tail, float *o) {
    /* level 1: the lower half of x_j's lanes holds partials of s_2j, the upper half those of s_2j+1 */
    vf x[4], y[2];
#if VL == 16
    for (int j = 0; j < 4; j++)
        x[j] = SHUF2(s[2 * j], s[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SHUF2(s[2 * j], s[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    /* level 2: groups of 4 lanes: y0 = (s0, s2, s1, s3), y1 = (s4, s6, s5, s7) */
    for (int j = 0; j < 2; j++)
        y[j] = SHUF2(x[2 * j], x[2 * j + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
               SHUF2(x[2 * j], x[2 * j + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    /* level 3: pairs of lanes (s0, s4, s2, s6, s1, s5, s3, s7); level 4: their even lanes hold the sums */
    vf z = SHUF2(y[0], y[1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           SHUF2(y[0], y[1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    z += SHUF2(z, z, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    static const int lane[8] = {0, 8, 4, 12, 2, 10, 6, 14};
    for (int c = 0; c < M; c++) o[c] += z[lane[c]] + tail[c];
#elif VL == 8
    for (int j = 0; j < 4; j++)
        x[j] = SHUF2(s[2 * j], s[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
               SHUF2(s[2 * j], s[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    /* level 2: pairs of lanes: y0 = (s0, s2, s1, s3), y1 = (s4, s6, s5, s7) */
    for (int j = 0; j < 2; j++)
        y[j] = SHUF2(x[2 * j], x[2 * j + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               SHUF2(x[2 * j], x[2 * j + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    /* level 3: one lane each, (s0, s4, s2, s6, s1, s5, s3, s7) */
    const vf z = SHUF2(y[0], y[1], 0, 8, 2, 10, 4, 12, 6, 14) + SHUF2(y[0], y[1], 1, 9, 3, 11, 5, 13, 7, 15);
    static const int lane[8] = {0, 4, 2, 6, 1, 5, 3, 7};
    for (int c = 0; c < M; c++) o[c] += z[lane[c]] + tail[c];
#else /* VL == 4 */
    for (int j = 0; j < 4; j++)
        x[j] = SHUF2(s[2 * j], s[2 * j + 1], 0, 1, 4, 5) + SHUF2(s[2 * j], s[2 * j + 1], 2, 3, 6, 7);
    /* level 2: one lane each, y0 = (s0, s2, s1, s3), y1 = (s4, s6, s5, s7) */
    for (int j = 0; j < 2; j++)
        y[j] = SHUF2(x[2 * j], x[2 * j + 1], 0, 4, 2, 6) + SHUF2(x[2 * j], x[2 * j + 1], 1, 5, 3, 7);
    static const int lane[4] = {0, 2, 1, 3};
    for (int c = 0; c < M; c++) o[c] += y[c / 4][lane[c % 4]] + tail[c];
#endif
}

/* o[c] += W2[c, J] . h_J[v] for the M <= 8 classes of one group (w2: W2[c0, j0], row stride d; hv: one row of h_J):
 * M vector partial sums in parallel (independent FMA chains, hv loaded once), then dots_reduce. */
static inline __attribute__((always_inline)) void out_dots(const int M, const float *hv, const float *w2, int64_t d,
                                                           int64_t k, float *o) {
    vf s[8];
    float tail[8];
    for (int c = 0; c < 8; c++) { s[c] = (vf){0}; tail[c] = 0.f; }
    int64_t q = 0;
    for (; q + VL <= k; q += VL) {
        const vf hq = LD(hv + q);
        for (int c = 0; c < M; c++) s[c] += hq * LD(w2 + c * d + q);
    }
    for (; q < k; q++)
        for (int c = 0; c < M; c++) tail[c] += hv[q] * w2[c * d + q];
    dots_reduce(M, s, tail, o);
}
