/* Per-ISA vector primitives that vector extensions express poorly: max, min,
 * partial (tail) loads and stores, horizontal reductions (hcount: the true
 * lanes of a comparison mask summed within one block, at most a block's 128
 * vectors times the lanes, so its `long` is wide enough even where long has 32
 * bits).  Included by _xentc_rows_impl.h with T, VT, VIT, NL, TBYTES, SUF and
 * ISA_KIND (0 generic, 1 SSE2, 2 AVX2, 3 AVX-512) defined. */

#if ISA_KIND == 3 && TBYTES == 4
#define XT_MASK(n) ((__mmask16)((1u << (n)) - 1u))
static inline VT SUF(vmax)(VT a, VT b) { return (VT)_mm512_max_ps((__m512)a, (__m512)b); }
static inline VT SUF(vmin)(VT a, VT b) { return (VT)_mm512_min_ps((__m512)a, (__m512)b); }
static inline VT SUF(load_part)(const T *p, ptrdiff_t n, T fill) {
    return (VT)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), XT_MASK(n), p);
}
static inline void SUF(store_part)(T *p, VT v, ptrdiff_t n) {
    _mm512_mask_storeu_ps(p, XT_MASK(n), (__m512)v);
}
static inline T SUF(hmax)(VT v) { return _mm512_reduce_max_ps((__m512)v); }
static inline double SUF(hsum)(VT v) { return _mm512_reduce_add_ps((__m512)v); }
static inline long SUF(hcount)(VIT v) { return -(long)_mm512_reduce_add_epi32((__m512i)v); }

/* 16 x 16 transpose of 16 row vectors of floats in registers (64 shuffles):
 * r[k] lane i becomes r[i] lane k.  Inlined and unrolled, so that r and t
 * stay in registers (a call with the arrays on the stack was 36% of a
 * 10-class loss); outputs the caller drops are not computed. */
static inline __attribute__((always_inline)) void SUF(transpose)(__m512 *r) {
    __m512 t[16];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < 8; i++) {          /* per 128-bit lane: a0 b0 a1 b1 / a2 b2 a3 b3 */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    _Pragma("GCC unroll 16")
    for (int g = 0; g < 4; g++) {          /* r[4g + k], lane L: element k + 4L of rows 4g .. 4g + 3 */
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    _Pragma("GCC unroll 16")
    for (int k = 0; k < 4; k++) {          /* 128-bit lanes across the row groups */
        t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    }
    _Pragma("GCC unroll 16")
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[k + 4] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
        r[k + 12] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD);
    }
}

/* The n <= 16 columns of a group of nr <= 16 rows of n floats (row i at x + i n):
 * cols[j] lane i = x[i n + j], 0 in the lanes of rows past nr.  Masked row
 * loads (rows past nr read nothing) and a transpose: cheaper than n 16-lane
 * gathers on CPUs whose gathers are slow (AMD Zen 4 among them). */
static inline __attribute__((always_inline)) void SUF(load_cols)(const T *x, ptrdiff_t n, ptrdiff_t nr,
                                                                  VT *cols) {
    __m512 r[16];
    __mmask16 row = XT_MASK(n);
    _Pragma("GCC unroll 16")
    for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(i < nr ? row : 0, x + i * n);
    SUF(transpose)(r);
    _Pragma("GCC unroll 16")
    for (int k = 0; k < 16; k++)
        if (k < n) cols[k] = (VT)r[k];
}

/* store_cols, the inverse: g[i n + j] = cols[j] lane i for the rows i < nr
 * and columns j < n (masked stores: nothing else is written). */
static inline __attribute__((always_inline)) void SUF(store_cols)(T *g, ptrdiff_t n, ptrdiff_t nr,
                                                                   const VT *cols) {
    __m512 r[16];
    __mmask16 row = XT_MASK(n);
    _Pragma("GCC unroll 16")
    for (int k = 0; k < 16; k++) r[k] = k < n ? (__m512)cols[k] : _mm512_setzero_ps();
    SUF(transpose)(r);
    _Pragma("GCC unroll 16")
    for (int i = 0; i < 16; i++)
        if (i < nr) _mm512_mask_storeu_ps(g + i * n, row, r[i]);
}
#undef XT_MASK

#elif ISA_KIND == 3 && TBYTES == 8
#define XT_MASK(n) ((__mmask8)((1u << (n)) - 1u))
static inline VT SUF(vmax)(VT a, VT b) { return (VT)_mm512_max_pd((__m512d)a, (__m512d)b); }
static inline VT SUF(vmin)(VT a, VT b) { return (VT)_mm512_min_pd((__m512d)a, (__m512d)b); }
static inline VT SUF(load_part)(const T *p, ptrdiff_t n, T fill) {
    return (VT)_mm512_mask_loadu_pd(_mm512_set1_pd(fill), XT_MASK(n), p);
}
static inline void SUF(store_part)(T *p, VT v, ptrdiff_t n) {
    _mm512_mask_storeu_pd(p, XT_MASK(n), (__m512d)v);
}
static inline T SUF(hmax)(VT v) { return _mm512_reduce_max_pd((__m512d)v); }
static inline double SUF(hsum)(VT v) { return _mm512_reduce_add_pd((__m512d)v); }
static inline long SUF(hcount)(VIT v) { return -(long)_mm512_reduce_add_epi64((__m512i)v); }

/* 8 x 8 transpose of 8 row vectors of doubles in registers (24 shuffles):
 * r[k] lane i becomes r[i] lane k.  For load_cols and store_cols below. */
static inline __attribute__((always_inline)) void SUF(transpose)(__m512d *r) {
    __m512d t[8], u[8];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < 4; i++) {      /* 128-bit lane L: elements 2L (lo) or 2L + 1 (hi) of two rows */
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    _Pragma("GCC unroll 2")
    for (int g = 0; g < 2; g++) {      /* u[4g + k]: elements k and k + 4 of rows 4g .. 4g + 3 */
        u[4 * g] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0x88);
        u[4 * g + 1] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0x88);
        u[4 * g + 2] = _mm512_shuffle_f64x2(t[4 * g], t[4 * g + 2], 0xDD);
        u[4 * g + 3] = _mm512_shuffle_f64x2(t[4 * g + 1], t[4 * g + 3], 0xDD);
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f64x2(u[k], u[4 + k], 0x88);
        r[k + 4] = _mm512_shuffle_f64x2(u[k], u[4 + k], 0xDD);
    }
}

/* The last one or two columns (w) at x of nr <= 8 rows of n >= 9 doubles,
 * without a transpose of 8 mostly empty columns: row i's elements go to
 * lanes 2i (and 2i + 1) of a (rows 0-3) or b (rows 4-7) by a masked load
 * from x + i n - 2i (inside the rows: n - 2 > 0; the masked-off lanes read
 * nothing), and one permute per column picks its lanes.  C harness, one core
 * of a Zen 4 VM, 32768 x 10 in cache, ns/logit: float64 dense loss 1.10 ->
 * 1.05, sparse loss 0.845 -> 0.841; with store_pairs sparse loss+grad 1.46
 * -> 1.43. */
static inline __attribute__((always_inline)) void SUF(load_pairs)(const T *x, ptrdiff_t n, ptrdiff_t nr,
                                                                   ptrdiff_t w, VT *cols) {
    __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
    __mmask8 lanes = w == 2 ? 3 : 1;
    _Pragma("GCC unroll 4")
    for (int i = 0; i < 4; i++) {
        if (i < nr) a = _mm512_mask_loadu_pd(a, (__mmask8)(lanes << (2 * i)), x + i * n - 2 * i);
        if (i + 4 < nr) b = _mm512_mask_loadu_pd(b, (__mmask8)(lanes << (2 * i)), x + (i + 4) * n - 2 * i);
    }
    cols[0] = (VT)_mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
    if (w == 2) cols[1] = (VT)_mm512_permutex2var_pd(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b);
}

/* store_pairs, the inverse (masked stores: nothing else is written) */
static inline __attribute__((always_inline)) void SUF(store_pairs)(T *g, ptrdiff_t n, ptrdiff_t nr,
                                                                    ptrdiff_t w, const VT *cols) {
    __m512d c1 = w == 2 ? (__m512d)cols[1] : _mm512_setzero_pd();
    __m512d a = _mm512_permutex2var_pd((__m512d)cols[0], _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), c1);
    __m512d b = _mm512_permutex2var_pd((__m512d)cols[0], _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), c1);
    __mmask8 lanes = w == 2 ? 3 : 1;
    _Pragma("GCC unroll 4")
    for (int i = 0; i < 4; i++) {
        if (i < nr) _mm512_mask_storeu_pd(g + i * n - 2 * i, (__mmask8)(lanes << (2 * i)), a);
        if (i + 4 < nr) _mm512_mask_storeu_pd(g + (i + 4) * n - 2 * i, (__mmask8)(lanes << (2 * i)), b);
    }
}

/* The n (8 <= n <= 16) columns of a group of nr <= 8 rows of n doubles, as
 * for floats above: per 8 columns, masked row loads (rows past nr and columns
 * past n read nothing) and a transpose. */
static inline __attribute__((always_inline)) void SUF(load_cols)(const T *x, ptrdiff_t n, ptrdiff_t nr,
                                                                  VT *cols) {
    _Pragma("GCC unroll 2")
    for (ptrdiff_t c0 = 0; c0 < 16; c0 += 8) {
        if (c0 >= n) break;
        if (n - c0 <= 2) {   /* one or two columns left: see load_pairs */
            SUF(load_pairs)(x + c0, n, nr, n - c0, cols + c0);
            break;
        }
        __m512d r[8];
        __mmask8 row = n - c0 >= 8 ? (__mmask8)0xff : XT_MASK(n - c0);
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) r[i] = _mm512_maskz_loadu_pd(i < nr ? row : 0, x + i * n + c0);
        SUF(transpose)(r);
        _Pragma("GCC unroll 8")
        for (int k = 0; k < 8; k++)
            if (c0 + k < n) cols[c0 + k] = (VT)r[k];
    }
}

/* store_cols, the inverse: g[i n + j] = cols[j] lane i for the rows i < nr
 * and columns j < n (masked stores: nothing else is written). */
static inline __attribute__((always_inline)) void SUF(store_cols)(T *g, ptrdiff_t n, ptrdiff_t nr,
                                                                   const VT *cols) {
    _Pragma("GCC unroll 2")
    for (ptrdiff_t c0 = 0; c0 < 16; c0 += 8) {
        if (c0 >= n) break;
        if (n - c0 <= 2) {
            SUF(store_pairs)(g + c0, n, nr, n - c0, cols + c0);
            break;
        }
        __m512d r[8];
        __mmask8 row = n - c0 >= 8 ? (__mmask8)0xff : XT_MASK(n - c0);
        _Pragma("GCC unroll 8")
        for (int k = 0; k < 8; k++) r[k] = c0 + k < n ? (__m512d)cols[c0 + k] : _mm512_setzero_pd();
        SUF(transpose)(r);
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++)
            if (i < nr) _mm512_mask_storeu_pd(g + i * n + c0, row, r[i]);
    }
}
#undef XT_MASK

#elif ISA_KIND == 2 && TBYTES == 4
static inline __m256i SUF(tail_mask)(ptrdiff_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline VT SUF(vmax)(VT a, VT b) { return (VT)_mm256_max_ps((__m256)a, (__m256)b); }
static inline VT SUF(vmin)(VT a, VT b) { return (VT)_mm256_min_ps((__m256)a, (__m256)b); }
static inline VT SUF(load_part)(const T *p, ptrdiff_t n, T fill) {
    __m256i m = SUF(tail_mask)(n);
    return (VT)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void SUF(store_part)(T *p, VT v, ptrdiff_t n) {
    _mm256_maskstore_ps(p, SUF(tail_mask)(n), (__m256)v);
}
static inline T SUF(hmax)(VT v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
static inline double SUF(hsum)(VT v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
static inline long SUF(hcount)(VIT v) {
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128((__m256i)v), _mm256_extracti128_si256((__m256i)v, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return -(long)_mm_cvtsi128_si32(h);
}

/* 8 x 8 transpose of 8 row vectors in registers (24 shuffles), for load_cols
 * and store_cols below */
static inline __attribute__((always_inline)) void SUF(transpose)(__m256 *r) {
    __m256 t[8];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < 4; i++) {          /* per 128-bit lane: a0 b0 a1 b1 / a2 b2 a3 b3 */
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    _Pragma("GCC unroll 2")
    for (int g = 0; g < 2; g++) {          /* r[4g + k], 128-bit lane L: column k + 4L of rows 4g .. 4g + 3 */
        r[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        r[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {          /* column k from the low lanes, k + 4 from the high */
        t[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
        t[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
    }
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) r[k] = t[k];
}
#define XT_VEC __m256   /* for load_cols / store_cols below */


/* the low and the high 32 bits of the int64 labels p[0 .. 7], lane i from
 * p[i]: two loads and four shuffles (vector extensions convert 64-bit lanes
 * to 32-bit ones through the stack, and the reload stalls) */
static inline void SUF(split_labels)(const int64_t *p, VIT *lo, VIT *hi) {
    __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)p));
    __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(p + 4)));
    /* per 128-bit lane: labels 0 1 4 5 | 2 3 6 7, then the 64-bit pairs in order */
    *lo = (VIT)_mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xD8);
    *hi = (VIT)_mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8);
}

#elif ISA_KIND == 2 && TBYTES == 8
static inline __m256i SUF(tail_mask)(ptrdiff_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
static inline VT SUF(vmax)(VT a, VT b) { return (VT)_mm256_max_pd((__m256d)a, (__m256d)b); }
static inline VT SUF(vmin)(VT a, VT b) { return (VT)_mm256_min_pd((__m256d)a, (__m256d)b); }
static inline VT SUF(load_part)(const T *p, ptrdiff_t n, T fill) {
    __m256i m = SUF(tail_mask)(n);
    return (VT)_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
}
static inline void SUF(store_part)(T *p, VT v, ptrdiff_t n) {
    _mm256_maskstore_pd(p, SUF(tail_mask)(n), (__m256d)v);
}
static inline T SUF(hmax)(VT v) {
    __m128d h = _mm_max_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
    h = _mm_max_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
}
static inline double SUF(hsum)(VT v) {
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
}
static inline long SUF(hcount)(VIT v) { return -(long)(v[0] + v[1] + v[2] + v[3]); }

/* 4 x 4 transpose of doubles (8 shuffles), for load_cols and store_cols below */
static inline __attribute__((always_inline)) void SUF(transpose)(__m256d *r) {
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#define XT_VEC __m256d


#else /* generic: SSE2 / NEON through vector extensions and lane loops */
static inline VT SUF(vmax)(VT a, VT b) {
    VIT gt = a > b;
    return (VT)(((VIT)a & gt) | ((VIT)b & ~gt));
}
static inline VT SUF(vmin)(VT a, VT b) {
    VIT lt = a < b;
    return (VT)(((VIT)a & lt) | ((VIT)b & ~lt));
}
static inline VT SUF(load_part)(const T *p, ptrdiff_t n, T fill) {
    VT v = (VT){0} + fill;
    for (ptrdiff_t i = 0; i < n; i++) v[i] = p[i];
    return v;
}
static inline void SUF(store_part)(T *p, VT v, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) p[i] = v[i];
}
static inline T SUF(hmax)(VT v) {
    T m = v[0];
    for (int i = 1; i < NL; i++) m = v[i] > m ? v[i] : m;
    return m;
}
static inline double SUF(hsum)(VT v) {
    double s = 0;
    for (int i = 0; i < NL; i++) s += v[i];
    return s;
}
static inline long SUF(hcount)(VIT v) {
    long c = 0;
    for (int i = 0; i < NL; i++) c -= v[i];
    return c;
}
#endif

#if ISA_KIND == 2
/* AVX2 load_cols, as for AVX-512 above: cols[j] lane i = x[i n + j] for j < n,
 * NL <= n <= 32, 0 in the lanes of rows past nr; one transpose per NL columns.
 * A row's loads past its n columns run into the next row, harmlessly (the
 * columns past n are dropped); the group's last row is loaded masked, so
 * nothing past the group's nr n elements is read. */
static inline __attribute__((always_inline)) void SUF(load_cols)(const T *x, ptrdiff_t n, ptrdiff_t nr,
                                                                  VT *cols) {
    _Pragma("GCC unroll 8")
    for (ptrdiff_t c0 = 0; c0 < 32; c0 += NL) {
        if (c0 >= n) break;
        XT_VEC r[NL];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < NL; i++) {
            const T *p = x + i * n + c0;
            VT v;
            if (i >= nr) v = (VT){0};
            else if (i * n + c0 + NL <= nr * n) __builtin_memcpy(&v, p, sizeof v);
            else v = SUF(load_part)(p, n - c0, 0);   /* the group's last row: n - c0 < NL */
            r[i] = (XT_VEC)v;
        }
        SUF(transpose)(r);
        _Pragma("GCC unroll 8")
        for (int k = 0; k < NL; k++)
            if (c0 + k < n) cols[c0 + k] = (VT)r[k];
    }
}

/* store_cols, the inverse: g[i n + j] = cols[j] lane i for the rows i < nr.  A
 * row's NL-wide store of its last, partial block of columns runs into the
 * next row's first block; those blocks are stored first and the full ones
 * after them, so every element is last written with its own value.  The
 * group's last row is stored masked: nothing past g + nr n is written. */
static inline __attribute__((always_inline)) void SUF(store_cols)(T *g, ptrdiff_t n, ptrdiff_t nr,
                                                                   const VT *cols) {
    ptrdiff_t last = (n - 1) / NL * NL;   /* the last block's first column */
    _Pragma("GCC unroll 8")
    for (ptrdiff_t b = 0; b <= 32 / NL; b++) {
        ptrdiff_t c0 = b == 0 ? last : (b - 1) * NL;
        if (b > 0 && c0 >= last) break;
        XT_VEC r[NL];
        _Pragma("GCC unroll 8")
        for (int k = 0; k < NL; k++) r[k] = c0 + k < n ? (XT_VEC)cols[c0 + k] : (XT_VEC){0};
        SUF(transpose)(r);
        _Pragma("GCC unroll 8")
        for (int i = 0; i < NL; i++) {
            if (i >= nr) break;
            T *p = g + i * n + c0;
            if (i * n + c0 + NL <= nr * n) __builtin_memcpy(p, &r[i], sizeof r[i]);
            else SUF(store_part)(p, (VT)r[i], n - c0);
        }
    }
}
#undef XT_VEC
#endif

/* gather: lanes i < nvalid get base[idx[i]], the others `fill`;
 * permute: lane i gets v[idx[i]] (0 <= idx[i] < NL). */
#if ISA_KIND == 3 && TBYTES == 4
static inline VT SUF(gather)(const T *base, VIT idx, ptrdiff_t nvalid, T fill) {
    __mmask16 k = nvalid >= NL ? (__mmask16)0xffff : (__mmask16)((1u << nvalid) - 1u);
    return (VT)_mm512_mask_i32gather_ps(_mm512_set1_ps(fill), k, (__m512i)idx, base, 4);
}
static inline VT SUF(permute)(VT v, VIT idx) { return (VT)_mm512_permutexvar_ps((__m512i)idx, (__m512)v); }
#elif ISA_KIND == 3 && TBYTES == 8
static inline VT SUF(gather)(const T *base, VIT idx, ptrdiff_t nvalid, T fill) {
    __mmask8 k = nvalid >= NL ? (__mmask8)0xff : (__mmask8)((1u << nvalid) - 1u);
    return (VT)_mm512_mask_i64gather_pd(_mm512_set1_pd(fill), k, (__m512i)idx, base, 8);
}
static inline VT SUF(permute)(VT v, VIT idx) { return (VT)_mm512_permutexvar_pd((__m512i)idx, (__m512d)v); }
#elif ISA_KIND == 2 && TBYTES == 4
static inline VT SUF(gather)(const T *base, VIT idx, ptrdiff_t nvalid, T fill) {
    __m256i m = SUF(tail_mask)(nvalid);
    return (VT)_mm256_mask_i32gather_ps(_mm256_set1_ps(fill), base, (__m256i)idx, _mm256_castsi256_ps(m), 4);
}
static inline VT SUF(permute)(VT v, VIT idx) { return (VT)_mm256_permutevar8x32_ps((__m256)v, (__m256i)idx); }
#elif ISA_KIND == 2 && TBYTES == 8
static inline VT SUF(gather)(const T *base, VIT idx, ptrdiff_t nvalid, T fill) {
    __m256i m = SUF(tail_mask)(nvalid);
    return (VT)_mm256_mask_i64gather_pd(_mm256_set1_pd(fill), base, (__m256i)idx, _mm256_castsi256_pd(m), 8);
}
static inline VT SUF(permute)(VT v, VIT idx) {
    /* 64-bit lane i takes 32-bit lanes 2 idx[i] and 2 idx[i] + 1 */
    __m256i i2 = _mm256_add_epi64(_mm256_slli_epi64((__m256i)idx, 1),
                                  _mm256_slli_epi64(_mm256_add_epi64(_mm256_slli_epi64((__m256i)idx, 1),
                                                                     _mm256_set1_epi64x(1)), 32));
    return (VT)_mm256_permutevar8x32_ps(_mm256_castpd_ps((__m256d)v), i2);
}
#else
static inline VT SUF(gather)(const T *base, VIT idx, ptrdiff_t nvalid, T fill) {
    VT v = (VT){0} + fill;
    for (ptrdiff_t i = 0; i < nvalid && i < NL; i++) v[i] = base[idx[i]];
    return v;
}
static inline VT SUF(permute)(VT v, VIT idx) {
    VT r;
    for (int i = 0; i < NL; i++) r[i] = v[idx[i] & (NL - 1)];
    return r;
}
#endif

/* any: whether some lane of the comparison result m is set */
#if ISA_KIND == 3 && TBYTES == 4
static inline int SUF(any)(VIT m) { return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0; }
#elif ISA_KIND == 3
static inline int SUF(any)(VIT m) { return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) != 0; }
#elif ISA_KIND == 2
static inline int SUF(any)(VIT m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }
#elif ISA_KIND == 1
static inline int SUF(any)(VIT m) { return _mm_movemask_epi8((__m128i)m) != 0; }
#else
static inline int SUF(any)(VIT m) {
    int r = 0;
    for (int i = 0; i < NL; i++) r |= m[i] != 0;
    return r;
}
#endif

/* add_nontie: *s += e in the lanes where v != vbm (e is exp(v - vbm)), and
 * *c -= 1 (the lanes' count of ties, negated like a comparison) where
 * v == vbm.  AVX-512 does it with one compare into a mask register and two
 * masked operations; elsewhere with a compare and two selects. */
#if ISA_KIND == 3 && TBYTES == 4
static inline void SUF(add_nontie)(VT *s, VIT *c, VT v, VT vbm, VT e) {
    __mmask16 k = _mm512_cmp_ps_mask((__m512)v, (__m512)vbm, _CMP_EQ_OQ);
    *s = (VT)_mm512_mask_add_ps((__m512)*s, (__mmask16)~k, (__m512)*s, (__m512)e);
    *c = (VIT)_mm512_mask_sub_epi32((__m512i)*c, k, (__m512i)*c, _mm512_set1_epi32(1));
}
#elif ISA_KIND == 3 && TBYTES == 8
static inline void SUF(add_nontie)(VT *s, VIT *c, VT v, VT vbm, VT e) {
    __mmask8 k = _mm512_cmp_pd_mask((__m512d)v, (__m512d)vbm, _CMP_EQ_OQ);
    *s = (VT)_mm512_mask_add_pd((__m512d)*s, (__mmask8)~k, (__m512d)*s, (__m512d)e);
    *c = (VIT)_mm512_mask_sub_epi64((__m512i)*c, k, (__m512i)*c, _mm512_set1_epi64(1));
}
#else
/* e & ~tie as one and-not (GCC would make ~(v == vbm) a second compare) */
#if ISA_KIND == 2 && TBYTES == 4
#define XT_ANDNOT(m, e) ((VT)_mm256_andnot_ps((__m256)(m), (__m256)(e)))
#elif ISA_KIND == 2
#define XT_ANDNOT(m, e) ((VT)_mm256_andnot_pd((__m256d)(m), (__m256d)(e)))
#elif ISA_KIND == 1 && TBYTES == 4
#define XT_ANDNOT(m, e) ((VT)_mm_andnot_ps((__m128)(m), (__m128)(e)))
#elif ISA_KIND == 1
#define XT_ANDNOT(m, e) ((VT)_mm_andnot_pd((__m128d)(m), (__m128d)(e)))
#else
#define XT_ANDNOT(m, e) ((VT)((VIT)(e) & ~(m)))
#endif
static inline void SUF(add_nontie)(VT *s, VIT *c, VT v, VT vbm, VT e) {
    VIT tie = v == vbm;
    *s += XT_ANDNOT(tie, e);
    *c += tie;
}
#undef XT_ANDNOT
#endif

/* whether the compiler has a fast FMA of T for the generic path */
#undef XT_FAST_FMA
#if (TBYTES == 4 && defined(__FP_FAST_FMAF)) || (TBYTES == 8 && defined(__FP_FAST_FMA))
#define XT_FAST_FMA 1
#else
#define XT_FAST_FMA 0
#endif

/* fmadd: a b + c, one rounding where the ISA has FMA.  For sums that two
 * passes must round alike (a block's y (x - max), see block_yz): GCC contracts
 * a b + c into an FMA or not as it sees fit, and did differently in two loops
 * of the same sum. */
#if ISA_KIND == 3 && TBYTES == 4
static inline VT SUF(fmadd)(VT a, VT b, VT c) { return (VT)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c); }
#elif ISA_KIND == 3
static inline VT SUF(fmadd)(VT a, VT b, VT c) { return (VT)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c); }
#elif ISA_KIND == 2 && TBYTES == 4
static inline VT SUF(fmadd)(VT a, VT b, VT c) { return (VT)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
#elif ISA_KIND == 2
static inline VT SUF(fmadd)(VT a, VT b, VT c) { return (VT)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
#else
/* SSE2 and the generic path: an FMA per lane where the compiler says the
 * target has a fast one (XT_FAST_FMA: GCC on arm64 or with -mfma, Clang on
 * arm64), else a b + c (Clang on x86 with -mfma may contract it, one
 * expression at a time) */
static inline VT SUF(fmadd)(VT a, VT b, VT c) {
#if XT_FAST_FMA
    VT r;
    for (int i = 0; i < NL; i++)
#if TBYTES == 4
        r[i] = __builtin_fmaf(a[i], b[i], c[i]);
#else
        r[i] = __builtin_fma(a[i], b[i], c[i]);
#endif
    return r;
#else
    return a * b + c;
#endif
}
#endif

/* a b + c for one element, as fmadd rounds it on this path (the scalar paths
 * of the same sums: labels of rows whose max is infinite) */
static inline T SUF(fma1)(T a, T b, T c) {
#if ISA_KIND >= 2 || XT_FAST_FMA
#if TBYTES == 4
    return __builtin_fmaf(a, b, c);
#else
    return __builtin_fma(a, b, c);
#endif
#else
    return a * b + c;
#endif
}
