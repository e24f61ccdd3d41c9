/* Row kernels compiled per ISA (see _xentc_rows.c) and the table in use. */
#ifndef XENTC_ROWS_H
#define XENTC_ROWS_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    /* rows [0, nrows) of n classes: loss[i], and grad rows unless g is NULL
     * (g may be x: in place); dense with invalid != NULL also flags rows whose
     * labels are not a distribution (see check_*); lse (or NULL) receives each
     * row's log-sum-exp; stream: a separate g too large for the cache is
     * written with streaming stores (see stream_scratch) */
    void (*dense_f32)(const float *x, const float *y, float *loss, float *g, ptrdiff_t nrows, ptrdiff_t n,
                      double rtol, int8_t *invalid, float *lse, const uint8_t *mask, ptrdiff_t mstride,
                      int stream);
    void (*dense_f64)(const double *x, const double *y, double *loss, double *g, ptrdiff_t nrows, ptrdiff_t n,
                      double rtol, int8_t *invalid, double *lse, const uint8_t *mask, ptrdiff_t mstride,
                      int stream);
    void (*sparse_f32)(const float *x, const int64_t *labels, float *loss, float *g, ptrdiff_t nrows, ptrdiff_t n,
                       float *lse, const uint8_t *mask, ptrdiff_t mstride, int stream);
    void (*sparse_f64)(const double *x, const int64_t *labels, double *loss, double *g, ptrdiff_t nrows,
                       ptrdiff_t n, double *lse, const uint8_t *mask, ptrdiff_t mstride, int stream);
    /* the softmax family over rows; mask (or NULL): the classes included (optax's
     * where=), row i at mask + i * mstride */
    void (*softmax_f32)(const float *x, float *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask, ptrdiff_t mstride);
    void (*softmax_f64)(const double *x, double *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask, ptrdiff_t mstride);
    void (*log_softmax_f32)(const float *x, float *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                            ptrdiff_t mstride);
    void (*log_softmax_f64)(const double *x, double *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                            ptrdiff_t mstride);
    void (*logsumexp_f32)(const float *x, float *out, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                          ptrdiff_t mstride);
    void (*logsumexp_f64)(const double *x, double *out, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                          ptrdiff_t mstride);
    /* PyTorch's cross_entropy per row: class indices (labels[i] < 0: ignored
     * row) or probability targets, class weights w (n values or NULL; ones
     * when eps > 0), label smoothing eps, gradient multiplied by gscale */
    void (*class_f32)(const float *x, const int64_t *labels, float *loss, float *g, ptrdiff_t nrows,
                      ptrdiff_t n, const float *w, double eps, double gscale);
    void (*class_f64)(const double *x, const int64_t *labels, double *loss, double *g, ptrdiff_t nrows,
                      ptrdiff_t n, const double *w, double eps, double gscale);
    void (*prob_f32)(const float *x, const float *t, float *loss, float *g, ptrdiff_t nrows,
                     ptrdiff_t n, const float *w, double eps, double gscale);
    void (*prob_f64)(const double *x, const double *t, double *loss, double *g, ptrdiff_t nrows,
                     ptrdiff_t n, const double *w, double eps, double gscale);
    /* invalid[i] = 1 unless row i of y is >= 0 and sums to 1 within rtol */
    void (*check_f32)(const float *y, int8_t *invalid, ptrdiff_t nrows, ptrdiff_t n, double rtol);
    void (*check_f64)(const double *y, int8_t *invalid, ptrdiff_t nrows, ptrdiff_t n, double rtol);
    /* scoring (see score_row): loss, lse (or NULL), max probability and the
     * label's rank (logits strictly greater, plus equal ones at lower
     * indices) per row, pmax in double; y (or NULL): dense
     * labels, whose argmax the caller passes in labels; invalid (dense, or NULL) */
    void (*score_f32)(const float *x, const int64_t *labels, const float *y, float *loss, float *lse,
                      double *pmax, int64_t *rank, ptrdiff_t nrows, ptrdiff_t n, double rtol, int8_t *invalid);
    void (*score_f64)(const double *x, const int64_t *labels, const double *y, double *loss, double *lse,
                      double *pmax, int64_t *rank, ptrdiff_t nrows, ptrdiff_t n, double rtol, int8_t *invalid);
    /* the index of the first of n labels outside [0, n_classes), or -1 */
    ptrdiff_t (*first_bad_label)(const int64_t *labels, ptrdiff_t n, ptrdiff_t n_classes);
    void (*exp_f32)(const float *x, float *y, ptrdiff_t n);
    void (*exp_f64)(const double *x, double *y, ptrdiff_t n);
    void (*exp_sum_f32)(const float *x, float *y, ptrdiff_t n);   /* x <= 0 */
    void (*exp_sum_f64)(const double *x, double *y, ptrdiff_t n);
} xentc_rows_table;

/* The table the kernels call; set by xentc_select_isa (baseline until then). */
extern const xentc_rows_table *xentc_rows;

/* Select "auto" (the best the CPU supports), "baseline", "avx2" or "avx512".
 * Returns 0, or -1 when the CPU or the build lacks that path (nothing changes). */
int xentc_select_isa(const char *request);

/* Comma-separated paths this build and CPU can run, best last. */
const char *xentc_available_isas(void);

#endif
