/* adam_row, torch.optim.Adam's update on a run of contiguous floats, for panel_kernel.c (W1's rows inside the
 * backward pass) and the entry point nsde_adam (any float32 parameter: COIN's small weights, one call each).
 * Included by panel_kernel.c after kernel_common.h; not a separate translation unit. */

/* Adam (torch.optim.Adam's update, L2 weight decay, no amsgrad) on m entries of one row of W1, from its gradient
 * g: hy = {lr, beta1, beta2, eps, weight_decay, 1 - beta1^t, sqrt(1 - beta2^t)} */
static inline __attribute__((always_inline)) void adam_row(int64_t m, float *p, float *ma, float *va,
                                                           const float *g, const float *hy) {
    const float b1 = hy[1], b2 = hy[2], eps = hy[3], wd = hy[4], step = hy[0] / hy[5], bc2 = hy[6];
    for (int64_t t = 0; t < m; t++) {
        const float gr = g[t] + wd * p[t];
        const float a = ma[t] + (1.f - b1) * (gr - ma[t]);
        const float s = b2 * va[t] + (1.f - b2) * gr * gr;
        ma[t] = a;
        va[t] = s;
        p[t] -= step * a / (__builtin_sqrtf(s) / bc2 + eps);
    }
}

/* One Adam step on m contiguous floats p with gradient g and moments ma, va (hy as in adam_row): the protocol's
 * optimiser for the parameters outside W1 (nsde_coin/graph/compiled_adam.py). */
API void ENTRY(nsde_adam)(int64_t m, float *p, float *ma, float *va, const float *g, const float *hy) {
    adam_row(m, p, ma, va, g, hy);
}
