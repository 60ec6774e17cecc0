/* The base layer's residual branch and output bias, x1 [W2^T; b2] and its gradient x1^T g, for panel_kernel.c's
 * entry points (nsde_panel_forward / _backward with b2 / gb2 given).  x1 = [x | 1]: rows of its CSR end with the
 * ones column, so the same gathers give the bias (forward) and g's column sums (backward).
 *
 * torch ran these as embedding_bag over an (d+1) x C table built by a transposed copy, and in the backward as the
 * transposed gather plus a transposed copy of its result: ~0.8 ms per Cora epoch with the caches cold after the
 * kernels, where the gathers themselves are 48 k short rows.  Here the table is a zero-padded copy with rows of a
 * whole number of RV-float vectors (scratch from the caller), so each non-zero is one multiply-add per vector.
 * Included by panel_kernel.c (one copy per instruction set); not a separate translation unit. */

#define RV (NSDE_VL >= 8 ? 8 : 4) /* floats per vector here */
typedef float rv __attribute__((vector_size(4 * RV)));
typedef float rvu __attribute__((vector_size(4 * RV), aligned(4), may_alias));

/* floats per padded row of C classes, and the scratch nsde_panel_forward / _backward need for the branch */
static inline int64_t residual_row(int64_t C) { return (C + RV - 1) / RV * RV; }
API int64_t ENTRY(nsde_residual_work)(int64_t rows, int64_t C) { return rows * residual_row(C); }

/* dst (m x C) row i = sum_{e in row i} vals[e] tab[idx[e]] (tab: rows of Cp = residual_row(C) floats) */
static void gather_rows(int64_t m, int64_t C, const int32_t *off, const int32_t *idx, const float *vals, int64_t nnz,
                        const float *tab, float *dst) {
    const int64_t Cp = residual_row(C), nv = Cp / RV;
    for (int64_t i = 0; i < m; i++) {
        const int64_t e1 = i + 1 < m ? off[i + 1] : nnz;
        for (int64_t q = 0; q < nv; q++) {
            rv a = {0};
            for (int64_t e = off[i]; e < e1; e++)
                a += vals[e] * (rv)(*(const rvu *)(tab + (int64_t)idx[e] * Cp + q * RV));
            const int64_t w = C - q * RV < RV ? C - q * RV : RV;
            memcpy(dst + i * C + q * RV, &a, (size_t)w * sizeof(float));
        }
    }
}

/* out (n x C) = x1 [W2^T; b2]: W2 (C x d), b2 (C); work: nsde_residual_work(d + 1, C) floats */
static void residual_forward(int64_t n, int64_t d, int64_t C, const int32_t *off, const int32_t *cols,
                             const float *vals, int64_t nnz, const float *W2, const float *b2, float *out,
                             float *work) {
    const int64_t Cp = residual_row(C);
    memset(work, 0, (size_t)((d + 1) * Cp) * sizeof(float));
    for (int64_t c = 0; c < C; c++) {
        for (int64_t i = 0; i < d; i++) work[i * Cp + c] = W2[c * d + i];
        work[d * Cp + c] = b2[c];
    }
    gather_rows(n, C, off, cols, vals, nnz, work, out);
}

/* gW2 (C x d) = (x^T g)^T, gb2 (C) = g's column sums: from x1^T's CSR (toff, trows, tvals; d + 1 rows, the last
 * the ones row); g (n x C); work: nsde_residual_work(n, C) + nsde_residual_work(d + 1, C) floats */
static void residual_backward(int64_t n, int64_t d, int64_t C, const int32_t *toff, const int32_t *trows,
                              const float *tvals, int64_t tnnz, const float *g, float *gW2, float *gb2, float *work) {
    const int64_t Cp = residual_row(C);
    float *gp = work, *t = work + n * Cp;
    for (int64_t v = 0; v < n; v++) {
        memcpy(gp + v * Cp, g + v * C, (size_t)C * sizeof(float));
        memset(gp + v * Cp + C, 0, (size_t)(Cp - C) * sizeof(float));
    }
    gather_rows(d + 1, C, toff, trows, tvals, tnnz, gp, t); /* (d + 1) x C, rows of stride C */
    for (int64_t c = 0; c < C; c++) {
        for (int64_t i = 0; i < d; i++) gW2[c * d + i] = t[i * C + c];
        gb2[c] = t[d * C + c];
    }
}
