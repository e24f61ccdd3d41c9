/* One ISA's instantiation of exp and the row kernels, for float and double.
 * Included by _xentc_rows.c, _xentc_rows_avx2.c and _xentc_rows_avx512.c with
 * ISA (a name), VBYTES (vector bytes) and
 * ISA_KIND (0 generic, 1 SSE2, 2 AVX2, 3 AVX-512) defined, inside that ISA's
 * target region. */

typedef float CAT(vf_, ISA) __attribute__((vector_size(VBYTES)));
typedef int32_t CAT(vif_, ISA) __attribute__((vector_size(VBYTES)));
typedef double CAT(vd_, ISA) __attribute__((vector_size(VBYTES)));
typedef int64_t CAT(vid_, ISA) __attribute__((vector_size(VBYTES)));
typedef uint32_t CAT(vuf_, ISA) __attribute__((vector_size(VBYTES)));
typedef uint64_t CAT(vud_, ISA) __attribute__((vector_size(VBYTES)));
#define VF CAT(vf_, ISA)
#define VIF CAT(vif_, ISA)
#define VD CAT(vd_, ISA)
#define VID CAT(vid_, ISA)
#define VUF CAT(vuf_, ISA)
#define VUD CAT(vud_, ISA)
#define ISUF(f) CAT(CAT(f, _), ISA)
#include "_xentc_exp.h"

#define T float
#define TBYTES 4
#define VT VF
#define VIT VIF
#define NL (VBYTES / 4)
#define VEXPCORE ISUF(vexpf_core)
#define VEXPSUM ISUF(vexpf_sum)
#define SUMSCALE_INV 0x1p-64
#define ZLOW (-104.0f)
#define ZSUM (-132.5f)
#define TINF INFINITY
#define SUF(f) CAT(CAT(f, _f32_), ISA)
#include "_xentc_rows_impl.h"
#undef T
#undef TBYTES
#undef VT
#undef VIT
#undef NL
#undef VEXPCORE
#undef VEXPSUM
#undef SUMSCALE_INV
#undef ZLOW
#undef ZSUM
#undef TINF
#undef SUF

#define T double
#define TBYTES 8
#define VT VD
#define VIT VID
#define NL (VBYTES / 8)
#define VEXPCORE ISUF(vexpd_core)
#define VEXPSUM ISUF(vexpd_sum)
#define SUMSCALE_INV 0x1p-64
#define ZLOW (-746.0)
#define ZSUM (-753.5)
#define TINF ((double)INFINITY)
#define SUF(f) CAT(CAT(f, _f64_), ISA)
#include "_xentc_rows_impl.h"
#undef T
#undef TBYTES
#undef VT
#undef VIT
#undef NL
#undef VEXPCORE
#undef VEXPSUM
#undef SUMSCALE_INV
#undef ZLOW
#undef ZSUM
#undef TINF
#undef SUF

static void ISUF(exp_f32)(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j += VBYTES / 4) {
        VF v = {0};
        ptrdiff_t r = n - j < VBYTES / 4 ? n - j : VBYTES / 4;
        memcpy(&v, x + j, r * sizeof(float));
        v = ISUF(vexpf)(v);
        memcpy(y + j, &v, r * sizeof(float));
    }
}

/* the row kernels' terms of a sum, exp(x) 2^64 for float (x <= 0; 0 at and
 * below about -132.05; -132.066 on AVX-512), through the kernels' own helper (tests) */
static void ISUF(exp_sum_f32)(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j += VBYTES / 4) {
        VF v = {0};
        ptrdiff_t r = n - j < VBYTES / 4 ? n - j : VBYTES / 4;
        memcpy(&v, x + j, r * sizeof(float));
        v = CAT(exp_neg_sum_f32_, ISA)(v);
        memcpy(y + j, &v, r * sizeof(float));
    }
}

/* the same for double (0 at and below -753.1) */
static void ISUF(exp_sum_f64)(const double *x, double *y, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j += VBYTES / 8) {
        VD v = {0};
        ptrdiff_t r = n - j < VBYTES / 8 ? n - j : VBYTES / 8;
        memcpy(&v, x + j, r * sizeof(double));
        v = CAT(exp_neg_sum_f64_, ISA)(v);
        memcpy(y + j, &v, r * sizeof(double));
    }
}

static void ISUF(exp_f64)(const double *x, double *y, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j += VBYTES / 8) {
        VD v = {0};
        ptrdiff_t r = n - j < VBYTES / 8 ? n - j : VBYTES / 8;
        memcpy(&v, x + j, r * sizeof(double));
        v = ISUF(vexpd)(v);
        memcpy(y + j, &v, r * sizeof(double));
    }
}

/* The sparse calls' label check, run on each chunk of rows before its kernel
 * (see sparse_xent in _kernels.pyx): an OR of unsigned comparisons, which the
 * compiler vectorises (a negative label is 2^63 or more as uint64), and the
 * index only when one is set.  65536 int64 labels of 10 classes each (40
 * chunks), AVX-512, the Zen 4 VM: the loss took 6 us longer with it on one
 * thread (301 -> 307 us), 3 us on two (153 -> 156), where the NumPy check
 * before it (a max over the labels) cost 11-12 us of the two-thread call. */
static ptrdiff_t ISUF(first_bad_label)(const int64_t *labels, ptrdiff_t n, ptrdiff_t n_classes) {
    uint64_t any = 0;
    for (ptrdiff_t i = 0; i < n; i++) any |= (uint64_t)labels[i] >= (uint64_t)n_classes;
    if (!any) return -1;
    for (ptrdiff_t i = 0; i < n; i++)
        if ((uint64_t)labels[i] >= (uint64_t)n_classes) return i;
    return -1;
}

const xentc_rows_table CAT(xentc_table_, ISA) = {
    CAT(ISA_NAME_, ISA),
    CAT(dense_rows_f32_, ISA), CAT(dense_rows_f64_, ISA),
    CAT(sparse_rows_f32_, ISA), CAT(sparse_rows_f64_, ISA),
    CAT(softmax_rows_f32_, ISA), CAT(softmax_rows_f64_, ISA),
    CAT(log_softmax_rows_f32_, ISA), CAT(log_softmax_rows_f64_, ISA),
    CAT(logsumexp_rows_f32_, ISA), CAT(logsumexp_rows_f64_, ISA),
    CAT(class_rows_f32_, ISA), CAT(class_rows_f64_, ISA),
    CAT(prob_rows_f32_, ISA), CAT(prob_rows_f64_, ISA),
    CAT(check_labels_f32_, ISA), CAT(check_labels_f64_, ISA),
    CAT(score_rows_f32_, ISA), CAT(score_rows_f64_, ISA),
    ISUF(first_bad_label),
    CAT(exp_f32_, ISA), CAT(exp_f64_, ISA), CAT(exp_sum_f32_, ISA), CAT(exp_sum_f64_, ISA),
};

#undef VF
#undef VIF
#undef VD
#undef VID
#undef VUF
#undef VUD
#undef ISUF
