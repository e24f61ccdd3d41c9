/* Row kernels of xentc, written once over GCC/Clang vector extensions and
 * instantiated per ISA and per float type by _xentc_isa.h.
 *
 * Included with these macros defined:
 *   T, TBYTES  float (4) or double (8)
 *   VT, VIT    the vector of T and the signed integer vector of the same width
 *   NL         lanes per vector
 *   SUF(f)     f with the type and ISA suffix appended
 *   VEXPCORE   vector exp without range checks, valid on [ZLOW, 0]
 *   VEXPSUM    the same times 1 / SUMSCALE_INV (a power of two), for terms
 *              that are only summed (may be cheaper), valid on [ZSUM, 0]
 *   ZLOW       below it exp rounds to 0 (-104 float, -746 double)
 *   ZSUM       where exp_neg_sum clamps, its term 0 there (-132.5 float,
 *              -753.5 double)
 *   TINF       +inf of type T
 *   ISA_KIND   for _xentc_prims.h
 *
 * Math (per row x of n >= 1 elements):
 *   M = max x, s = sum_{j != k} exp(x_j - M) with one max element k left out,
 *   logsumexp = M + log1p(s), softmax = exp(x - M) / (1 + s),
 *   log_softmax = (x - M) - log1p(s).
 * Leaving the max term (exactly 1) out of s and taking log1p keeps tiny
 * values: a confident ten-class row (10 against nine -10) has s = 1.855e-8,
 * which 1 + s would round away in float32.
 *
 * One read of the row computes M and s: the row is cut into blocks of BLOCK
 * elements (resident in L1 while they are used), each block gives its max bm,
 * a count c >= 1 of elements equal to bm whose terms it leaves out (those in
 * the pair of vectors where a scan finds bm first, in the block's last odd
 * vector and in its tail, see stats_loop; masked rows: all of them) and the
 * sum of exp(x - bm) over the others (other ties add exactly 1 each); blocks are
 * merged in double with exp(bm - M) weights.  The left-out max term is one of
 * the c ties of the largest block max, an exact integer subtraction.  Rows
 * longer than the L2 cache are therefore read once for the loss (and once
 * more for the gradient); the max pass and the scan read the block in L1.
 *
 * A NaN is left out by the max pass of its block and found in that block's
 * sum (exp_neg_sum keeps it), which ends the row's statistics; blocks whose
 * max is +inf or -inf take a short scalar path (exp(x - inf) would be NaN at
 * the ties) that looks for NaNs itself.  Masked rows and scoring's rank
 * count still find NaNs in their max pass.  Output
 * passes of rows of at most STORE_N elements scale the terms the statistics
 * pass stored (see row_stats_gt); longer rows take the exp again, and those
 * whose max is +inf take a scalar path.
 */

#include "_xentc_prims.h"

/* Elements per block: 128 vectors, summed into two sets of accumulators (even
 * and odd vectors, see stats_loop: the terms, and with labels sum y and sum
 * y z), so that each vector lane of either sums at most 64 terms in T before
 * the block total is taken to double.  Blocks of 128 vectors rather than 64:
 * C harness, one core, AVX2, float32 sparse loss (min of 7 interleaved runs),
 * 0.425 -> 0.398 ns/logit for 4 x 8192 in cache, 0.447 -> 0.428 for 2048 x
 * 2000 out of cache; dense loss 0.556 -> 0.514 (the per-block work: the
 * horizontal sums, the merge's exp, the constants set up again). */
#undef BLOCK
#define BLOCK (128 * NL)

static inline VT SUF(splat)(T v) { return (VT){0} + v; }

static inline VT SUF(sel)(VIT mask, VT a, VT b) {
    return (VT)(((VIT)a & mask) | ((VIT)b & ~mask));
}

/* exp(z) for z <= 0 or -inf (never NaN): 0 below ZLOW */
static inline VT SUF(exp_neg)(VT z) { return VEXPCORE(SUF(vmax)(z, SUF(splat)(ZLOW))); }

/* the same times 1 / SUMSCALE_INV, for terms that only go into a sum, z
 * clamped at ZSUM, where the term is exactly 0 (as for -inf).  A NaN z gives a
 * NaN term (vmax returns its second operand when one is NaN): block_stats
 * finds NaN rows by their sum. */
static inline VT SUF(exp_neg_sum)(VT z) { return VEXPSUM(SUF(vmax)(SUF(splat)(ZSUM), z)); }

static inline VT SUF(load)(const T *p) { VT v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline void SUF(store)(T *p, VT v) { __builtin_memcpy(p, &v, sizeof v); }

/* A non-temporal (streaming) store of a whole vector at p, aligned to VBYTES:
 * the line is written without being read first, and without taking a place in
 * the cache (AVX2 and AVX-512; a plain store elsewhere).  For gradients too
 * large to stay in the cache (see STREAM_BYTES in _kernels.pyx). */
static inline void SUF(stream)(T *p, VT v) {
#if ISA_KIND == 3 && TBYTES == 4
    _mm512_stream_ps(p, (__m512)v);
#elif ISA_KIND == 3
    _mm512_stream_pd(p, (__m512d)v);
#elif ISA_KIND == 2 && TBYTES == 4
    _mm256_stream_ps(p, (__m256)v);
#elif ISA_KIND == 2
    _mm256_stream_pd(p, (__m256d)v);
#else
    SUF(store)(p, v);
#endif
}

/* after the streaming stores of a chunk: they are weakly ordered */
static inline void SUF(stream_fence)(void) {
#if ISA_KIND >= 2
    _mm_sfence();
#endif
}

/* where= masks: one byte per class, nonzero = included.  A masked class is
 * treated as a logit of -inf with label 0, so it drops out of every sum. */
typedef uint8_t SUF(vbytes) __attribute__((vector_size(NL)));

/* mask lanes for classes j .. j + NL (the first r when r < NL): -1 = included */
static inline VIT SUF(mask_load)(const uint8_t *m, ptrdiff_t r) {
    SUF(vbytes) b = {0};
    __builtin_memcpy(&b, m, (size_t)(r >= NL ? NL : r));
    return __builtin_convertvector(b, VIT) != 0;
}

/* One block's statistics, and the running merge of blocks (row so far).  c
 * counts the ties of the max left out of rest: int64_t, since a row may hold
 * more than 2^31 of them and long is 32 bits on LLP64 (Windows). */
typedef struct { T m; int64_t c; double rest, sy, yz; T ymin, ymax; int nan, any; } SUF(acc);

/* max of x[0:n] over the classes mk includes (mk NULL: all); sets *nan when an
 * included NaN is present and *any when some class is included */
static T SUF(block_max_masked)(const T *x, ptrdiff_t n, int *nan, int *any, const uint8_t *mk) {
    VT m = SUF(splat)(-TINF), ninf = m;
    VIT bad = (VIT){0}, inc = (VIT){0};
    for (ptrdiff_t j = 0; j < n; j += NL) {
        ptrdiff_t r = n - j;
        VIT k = SUF(mask_load)(mk + j, r);
        VT a = SUF(sel)(k, r >= NL ? SUF(load)(x + j) : SUF(load_part)(x + j, r, -TINF), ninf);
        m = SUF(vmax)(a, m);
        bad |= a != a;
        inc |= k;
    }
    if (SUF(hcount)(bad)) *nan = 1;
    if (SUF(hcount)(inc)) *any = 1;
    return SUF(hmax)(m);
}

/* The first pair of vectors (2 NL elements from x + j, j an even multiple of
 * NL) in block_stats' loop that holds an element equal to bm, the max of
 * x[0:n]: j; n when the first such element is past the pairs (the last odd
 * vector and the tail test every element for ties anyway); -1 when there is
 * none (only for a max not taken from x; every vector then tests).  Called
 * for a finite bm only (an infinite one takes block_stats_inf).
 * Scans four vectors per step, stopping at the first hit: on average half
 * the block, a few operations per vector read, instead of the tie test on
 * every vector of the sum (see stats_loop). */
static inline ptrdiff_t SUF(tie_pair)(const T *x, ptrdiff_t n, T bm) {
    VT vbm = SUF(splat)(bm);
    ptrdiff_t j = 0;
    for (; j + 4 * NL <= n; j += 4 * NL) {
        VIT t0 = (SUF(load)(x + j) == vbm) | (SUF(load)(x + j + NL) == vbm);
        VIT t1 = (SUF(load)(x + j + 2 * NL) == vbm) | (SUF(load)(x + j + 3 * NL) == vbm);
        if (SUF(any)(t0 | t1)) return SUF(any)(t0) ? j : j + 2 * NL;
    }
    if (j + 2 * NL <= n) {
        if (SUF(any)((SUF(load)(x + j) == vbm) | (SUF(load)(x + j + NL) == vbm))) return j;
        j += 2 * NL;
    }
    for (; j < n; j++)
        if (x[j] == bm) return n;
    return -1;
}

/* max of x[0:n] (-inf for n == 0), NaNs left out: row_stats_gt finds them
 * in the block's sum (see exp_neg_sum), or block_stats_inf; *jt: tie_pair
 * (scanning from segments of 32 vectors whose running max reaches the max
 * instead of from 0 was no faster: C harness, one core) */
static inline T SUF(block_max)(const T *x, ptrdiff_t n, ptrdiff_t *jt) {
    VT m0 = SUF(splat)(-TINF), m1 = m0, m2 = m0, m3 = m0;
    ptrdiff_t j = 0;
    for (; j + 4 * NL <= n; j += 4 * NL) {   /* four chains hide the max latency */
        m0 = SUF(vmax)(SUF(load)(x + j), m0);
        m1 = SUF(vmax)(SUF(load)(x + j + NL), m1);
        m2 = SUF(vmax)(SUF(load)(x + j + 2 * NL), m2);
        m3 = SUF(vmax)(SUF(load)(x + j + 3 * NL), m3);
    }
    for (; j + NL <= n; j += NL) m0 = SUF(vmax)(SUF(load)(x + j), m0);
    if (j < n) m0 = SUF(vmax)(SUF(load_part)(x + j, n - j, -TINF), m0);
    T bm = SUF(hmax)(SUF(vmax)(SUF(vmax)(m0, m1), SUF(vmax)(m2, m3)));
    *jt = bm > -TINF && bm < TINF ? SUF(tie_pair)(x, n, bm) : -1;
    return bm;
}

/* block_max, and *gt += the number of elements strictly greater than xl (the
 * label's logit; NaN compares false), *eq += the number equal to it: the
 * label's rank for top-k, counted while the block is read for its max
 * (score_row; *eq may overcount when xl is -inf, see there) */
static inline T SUF(block_max_gt)(const T *x, ptrdiff_t n, int *nan, T xl, int64_t *gt, int64_t *eq,
                                   ptrdiff_t *jt) {
    VT m0 = SUF(splat)(-TINF), m1 = m0, m2 = m0, m3 = m0, vxl = SUF(splat)(xl);
    VIT bad = (VIT){0}, c0 = bad, c1 = bad, e0 = bad;   /* comparison lanes are -1: counts are negated */
    ptrdiff_t j = 0;
    for (; j + 4 * NL <= n; j += 4 * NL) {
        VT a = SUF(load)(x + j), b = SUF(load)(x + j + NL);
        VT c = SUF(load)(x + j + 2 * NL), d = SUF(load)(x + j + 3 * NL);
        m0 = SUF(vmax)(a, m0); m1 = SUF(vmax)(b, m1);
        m2 = SUF(vmax)(c, m2); m3 = SUF(vmax)(d, m3);
        bad |= (a != a) | (b != b) | (c != c) | (d != d);
        c0 += (a > vxl) + (b > vxl);
        c1 += (c > vxl) + (d > vxl);
        e0 += (a == vxl) + (b == vxl) + (c == vxl) + (d == vxl);
    }
    for (; j + NL <= n; j += NL) {
        VT a = SUF(load)(x + j);
        m0 = SUF(vmax)(a, m0);
        bad |= a != a;
        c0 += a > vxl;
        e0 += a == vxl;
    }
    if (j < n) {
        VT a = SUF(load_part)(x + j, n - j, -TINF);   /* -inf pads are never > xl; they */
        m0 = SUF(vmax)(a, m0);                         /* count as equal to xl = -inf, but */
        bad |= a != a;                                 /* eq only says whether to look for */
        c0 += a > vxl;                                 /* ties (score_row) */
        e0 += a == vxl;
    }
    if (SUF(hcount)(bad)) *nan = 1;
    /* a block has at most 128 NL elements: at most 128 per lane of c0, c1 or e0 */
    *gt += SUF(hcount)(c0) + SUF(hcount)(c1);
    *eq += SUF(hcount)(e0);
    T bm = SUF(hmax)(SUF(vmax)(SUF(vmax)(m0, m1), SUF(vmax)(m2, m3)));
    *jt = bm > -TINF && bm < TINF ? SUF(tie_pair)(x, n, bm) : -1;
    return bm;
}

/* Labels as the kernels see them, per class j of a row:
 *   mode 0  none                      (L == NULL)
 *   mode 1  y_j                       (L->y, L->w == NULL)
 *   mode 2  w_j (a y_j + b)           (class weights and label smoothing on y)
 *   mode 3  w_j                       (L->y == NULL: the weights alone, for the
 *                                      smoothing term of class-index targets)
 * Loads past the row's end read as 0 (a label 0 contributes nothing). */
typedef struct { const T *y, *w; T a, b; const double *wblk; } SUF(lab);

/* mode 4 is mode 3 with the weights' per-block sum, min and max precomputed in
 * wblk (they are the same for every row): only sum w (x - bm) is accumulated */
static inline int SUF(lab_mode)(const SUF(lab) *L) {
    return !L ? 0 : L->y ? (L->w ? 2 : 1) : L->w ? (L->wblk ? 4 : 3) : 0;
}

/* labels j .. j + NL (only the first r when r < NL) */
static inline __attribute__((always_inline)) VT SUF(lab_load)(const SUF(lab) *L, ptrdiff_t j,
                                                              ptrdiff_t r, int mode) {
    VT y = SUF(splat)(0), w = y;
    if (mode == 1 || mode == 2) y = r >= NL ? SUF(load)(L->y + j) : SUF(load_part)(L->y + j, r, 0);
    if (mode >= 2) w = r >= NL ? SUF(load)(L->w + j) : SUF(load_part)(L->w + j, r, 0);
    /* y a + b as one FMA where there is one, the same in every loop (fmadd) */
    return mode == 1 ? y : mode == 2 ? w * SUF(fmadd)(y, SUF(splat)(L->a), SUF(splat)(L->b)) : w;
}

static inline T SUF(lab_at)(const SUF(lab) *L, ptrdiff_t j, int mode) {
    return mode == 1 ? L->y[j] : mode == 2 ? L->w[j] * SUF(fma1)(L->y[j], L->a, L->b)
         : mode >= 3 ? L->w[j] : (T)0;
}

/* Scalar statistics of a block (classes j0 .. j0 + n) whose max bm is +inf or
 * -inf (rare): the ties are the infinite elements, every other exp(x - bm) is
 * 0 (bm = +inf); with bm = -inf all elements are ties. */
static void SUF(block_stats_inf)(const T *x, const SUF(lab) *L, ptrdiff_t j0, ptrdiff_t n, T bm, SUF(acc) *b,
                                 const uint8_t *mk, T *eo) {
    int mode = SUF(lab_mode)(L);
    b->m = bm; b->c = 0; b->rest = 0; b->sy = 0; b->yz = 0; b->ymin = 0; b->ymax = 0; b->nan = 0;
    for (ptrdiff_t j = 0; j < n; j++) {
        int in = !mk || mk[j];
        T xj = in ? x[j] : -TINF;
        if (xj == bm) b->c++;
        if (xj != xj) b->nan = 1;   /* block_max leaves NaNs out */
        if (eo)   /* exp(x - bm) / SUMSCALE_INV (see row_stats_gt): 1 at +inf ties, else 0 */
            eo[j] = bm == TINF && xj == bm ? (T)(1 / SUMSCALE_INV) : (T)0;
        if (mode && in) {
            T yj = SUF(lab_at)(L, j0 + j, mode);
            b->sy += yj;
            if (!(yj >= b->ymin)) b->ymin = yj;
            if (yj > b->ymax) b->ymax = yj;
            /* y (x - bm) is -inf for a finite x under bm = +inf; 0 at ties */
            if (yj != 0 && xj != bm) b->yz += (double)yj * ((double)xj - (double)bm);
        }
    }
}

/* Accumulators of block_stats. */
typedef struct { VT s, s1, sy, sy1, yz, yz1, ymin, ymax; VIT c; } SUF(vsums);

/* One vector of block_stats: v (logits), w (labels, unless mode 0); returns
 * the vector's terms exp(v - bm) / SUMSCALE_INV (ties included).  With tie,
 * the terms of elements equal to bm are left out of the sum and counted in c;
 * without, they are summed (each exactly 1 / SUMSCALE_INV).  With guard
 * 0, y z is one FMA, which is NaN where y = 0 meets z = -inf (a -inf logit):
 * block_stats then sums the block's y z again with the guard. */
static inline __attribute__((always_inline)) VT SUF(stats_step)(SUF(vsums) *a, VT v, VT w, VT vbm, int mode,
                                                                int guard, int odd, int tie) {
    VT zero = SUF(splat)(0);
    VT z = v - vbm;
    VT e = SUF(exp_neg_sum)(z);
    if (tie)
        SUF(add_nontie)(odd ? &a->s1 : &a->s, &a->c, v, vbm, e);
    else
        *(odd ? &a->s1 : &a->s) += e;
    VT *yz = odd ? &a->yz1 : &a->yz;
    if (mode && !guard)
        *yz = SUF(fmadd)(w, z, *yz);
    else if (mode)   /* 0 * log 0 = 0: z taken as 0 where y == 0 (an FMA as above, */
        *yz = SUF(fmadd)(w, SUF(sel)(w != zero, z, zero), *yz);   /* so both round alike) */
    if (mode && mode < 4) {
        *(odd ? &a->sy1 : &a->sy) += w;
        a->ymin = SUF(vmin)(w, a->ymin);
        a->ymax = SUF(vmax)(w, a->ymax);
    }
    return e;
}

/* How far ahead stats_loop prefetches: 1.5 blocks, at least 6 KiB (6 KiB on
 * AVX2 and baseline, 12 KiB on AVX-512, whose blocks are 8 KiB).  AVX2, C
 * harness, one Zen 3 core, float32, 16384 x 1000 out of cache, blocks of 64
 * vectors (2 KiB): 2 KiB ahead 0.60-0.62 ns/logit sparse loss, 4 KiB 0.56, 6
 * KiB 0.54-0.55, 12 KiB 0.57; loss+grad 0.85-0.89 against 0.79 for 4-6 KiB;
 * dense loss unchanged; with blocks of 128 vectors 8 KiB the same as 6, 12
 * KiB 1-2% slower.  AVX-512, Python timing, two threads of a 2-vCPU Xeon,
 * float32 sparse loss 8192 x 32000 (five builds interleaved, three rounds):
 * 6 KiB 0.29-0.34 ns/logit, 12 KiB 0.24-0.25, 16 KiB 0.24-0.26, 24 KiB
 * 0.26-0.38, 32 KiB 0.26-0.31 (6 KiB ahead stops inside the next block of
 * 8 KiB). */
#undef XT_PF_AHEAD
#define XT_PF_AHEAD ((192 * VBYTES > 6144 ? 192 * VBYTES : 6144) / TBYTES)

/* On AVX-512, the statistics loops that keep no terms (no eo: the losses, and
 * the first pass of outputs that take the exp again, as for rows longer than
 * STORE_N or with class weights; those not timed apart) also prefetch into L2
 * (locality hint 2: PREFETCHT1) 32 KiB ahead, over whole blocks.  A prefetch
 * into L1 holds one of the core's few L1 miss buffers until its line arrives,
 * which caps what one core has in flight; the far L2 prefetch keeps more lines
 * coming.  C harness, the 2-vCPU Xeon, float32 sparse loss 8192 x 32000 (1 GB),
 * old and new builds interleaved, four rounds, min ns/logit: two threads
 * 0.173-0.211 -> 0.164-0.188 (a plain vector max over the array: 0.138-0.164),
 * one thread 0.347-0.407 -> 0.314-0.361; dense loss within the noise
 * (0.317-0.336 -> 0.270-0.337).  Through Python (16-row chunks, the machine
 * noisier) less: two threads, six rounds, min per call faster in 5 by 1-8%
 * (0.212-0.306 -> 0.203-0.288), the sixth an outlier (0.215 -> 0.415).  In a
 * sweep (2048 x 32000) 24, 48, 64 and 96 KiB ahead did about as well as 32.
 * Left out where it did not pay: loops that keep their terms (eo: loss+grad,
 * 0.39-0.40 -> 0.41-0.42 ns/logit), rows shorter than a block (the sparse
 * loss of 16384 x 1000: no faster, perhaps slower; see below) and AVX2
 * (blocks of 4 KiB; 2048 x 32000 0.19-0.22 either way on this machine).
 * Dense labels (two streams) take it in rows shorter than a block too, from
 * 2 KiB: C harness, one core of a 2-vCPU AMD EPYC (Zen 4) VM, out of cache,
 * builds alternated, min ns/logit of the dense loss: float32 16384 x 1000
 * 0.483 -> 0.406, 4096 x 4000 (its second block) 0.453 -> 0.351, 32768 x
 * 600 0.553 -> 0.488; float64 16384 x 1000 0.860 -> 0.814, 65536 x 300
 * 1.110 -> 1.048; shorter rows no faster or slower (float32 65536 x 300
 * 0.617 -> 0.634, 65536 x 100 1.18 -> 1.26; float64 65536 x 200 1.19
 * either way).  The sparse loss of short rows was slower with it (float32
 * 16384 x 1000 0.305 -> 0.314, float64 0.631 -> 0.678). */
#undef XT_PF_FAR
#define XT_PF_FAR (32768 / TBYTES)

/* eo (or NULL): where the terms go (stats_step), eo[j] for x[j]; may be x.
 * guard: see stats_step (the tail, whose pads are -inf, always has it).
 * jt: the pair of vectors from x + jt (tie_pair) holds an element equal to bm;
 * that pair, the last odd vector and the tail leave the ties of bm out of the
 * sum and count them in c (at least one), the other pairs sum every term, a
 * tie's as exactly 1 (the same s = (c - 1) + rest; those pairs skip a compare
 * and two operations per vector, on AVX-512 a compare and a masked subtract:
 * C harness, one core, AVX2, built at -O3,
 * 16 x 8192 in cache, float32 sparse loss 0.40 -> 0.35 ns/logit, dense 0.49 ->
 * 0.45, float64 sparse 1.16 -> 1.05; at -O2 no faster).  The pairs before and
 * after jt run in loops of their own: one loop with a branch on j == jt was
 * 5% slower than no change at -O2.  A tie summed as 1 costs accuracy only in
 * a block with two ties of its max: the rounding of its sum then stays within
 * twice that of the block's own part of s (the row max's block: s >= 1).
 * jt < 0: every vector takes the tie test. */
static inline __attribute__((always_inline)) void SUF(stats_pair)(SUF(vsums) *a, const T *x, const SUF(lab) *L,
                                                                  ptrdiff_t j0, ptrdiff_t j, VT vbm, int mode,
                                                                  T *eo, int guard, int tie, int far) {
    __builtin_prefetch(x + j + XT_PF_AHEAD);   /* ahead of the block_max pass that reads it */
    if (VBYTES > 32) __builtin_prefetch(x + j + NL + XT_PF_AHEAD);
    if (mode == 1 || mode == 2) {
        __builtin_prefetch(L->y + j0 + j + XT_PF_AHEAD);
        if (VBYTES > 32) __builtin_prefetch(L->y + j0 + j + NL + XT_PF_AHEAD);
    }
    if (far) {   /* into L2 from further ahead too (see XT_PF_FAR) */
        __builtin_prefetch(x + j + XT_PF_FAR, 0, 2);
        __builtin_prefetch(x + j + NL + XT_PF_FAR, 0, 2);
        if (mode == 1 || mode == 2) {
            __builtin_prefetch(L->y + j0 + j + XT_PF_FAR, 0, 2);
            __builtin_prefetch(L->y + j0 + j + NL + XT_PF_FAR, 0, 2);
        }
    }
    for (int k = 0; k < 2; k++) {
        VT e = SUF(stats_step)(a, SUF(load)(x + j + k * NL), SUF(lab_load)(L, j0 + j + k * NL, NL, mode), vbm,
                               mode, guard, k, tie);
        if (eo) SUF(store)(eo + j + k * NL, e);
    }
}

static inline __attribute__((always_inline)) void SUF(stats_loop)(SUF(vsums) *a, const T *x, const SUF(lab) *L,
                                                                  ptrdiff_t j0, ptrdiff_t n, VT vbm, int mode,
                                                                  T *eo, int guard, ptrdiff_t jt) {
    ptrdiff_t j = 0, npairs = n / (2 * NL) * (2 * NL);   /* two vectors per prefetch: one per line for VBYTES 32 */
    int far = VBYTES > 32 && !eo   /* XT_PF_FAR */
              && (n == BLOCK || ((mode == 1 || mode == 2) && n * TBYTES >= 2048));
    if (jt < 0) {
        for (; j < npairs; j += 2 * NL) SUF(stats_pair)(a, x, L, j0, j, vbm, mode, eo, guard, 1, far);
    } else {
        ptrdiff_t jend = jt < npairs ? jt : npairs;
        for (; j < jend; j += 2 * NL) SUF(stats_pair)(a, x, L, j0, j, vbm, mode, eo, guard, 0, far);
        if (j < npairs) {
            SUF(stats_pair)(a, x, L, j0, j, vbm, mode, eo, guard, 1, far);
            j += 2 * NL;
        }
        for (; j < npairs; j += 2 * NL) SUF(stats_pair)(a, x, L, j0, j, vbm, mode, eo, guard, 0, far);
    }
    if (j + NL <= n) {
        __builtin_prefetch(x + j + XT_PF_AHEAD);
        if (mode == 1 || mode == 2) __builtin_prefetch(L->y + j0 + j + XT_PF_AHEAD);
        VT e = SUF(stats_step)(a, SUF(load)(x + j), SUF(lab_load)(L, j0 + j, NL, mode), vbm, mode, guard, 0, 1);
        if (eo) SUF(store)(eo + j, e);
        j += NL;
    }
    if (j < n) {   /* the pads are -inf with weight 0: the guard; vector j / NL of the block */
        VT v = SUF(load_part)(x + j, n - j, -TINF), w = SUF(lab_load)(L, j0 + j, n - j, mode);
        VT e = (j / NL) & 1 ? SUF(stats_step)(a, v, w, vbm, mode, 1, 1, 1)
                            : SUF(stats_step)(a, v, w, vbm, mode, 1, 0, 1);
        if (eo) SUF(store_part)(eo + j, e, n - j);
    }
}

/* the same over the classes the mask mk includes (the others: -inf, label 0);
 * vector j / NL of the block (odd: j / NL odd) with label mode 0-2 */
static inline __attribute__((always_inline)) void SUF(masked_step)(SUF(vsums) *a, const T *x, const SUF(lab) *L,
                                                                   ptrdiff_t j0, ptrdiff_t j, ptrdiff_t n, VT vbm,
                                                                   const uint8_t *mk, int mode, int odd) {
    VT zero = SUF(splat)(0);
    ptrdiff_t r = n - j;
    VIT k = SUF(mask_load)(mk + j, r);
    VT v = SUF(sel)(k, r >= NL ? SUF(load)(x + j) : SUF(load_part)(x + j, r, -TINF), SUF(splat)(-TINF));
    VT w = mode ? SUF(sel)(k, SUF(lab_load)(L, j0 + j, r, mode), zero) : zero;
    SUF(stats_step)(a, v, w, vbm, mode, 1, odd, 1);
}

static inline __attribute__((always_inline)) void SUF(masked_loop)(SUF(vsums) *a, const T *x, const SUF(lab) *L,
                                                                   ptrdiff_t j0, ptrdiff_t n, VT vbm,
                                                                   const uint8_t *mk, int mode) {
    ptrdiff_t j = 0;
    for (; j + 2 * NL <= n; j += 2 * NL) {   /* the even and the odd vector of a pair */
        SUF(masked_step)(a, x, L, j0, j, n, vbm, mk, mode, 0);
        SUF(masked_step)(a, x, L, j0, j + NL, n, vbm, mk, mode, 1);
    }
    if (j < n) SUF(masked_step)(a, x, L, j0, j, n, vbm, mk, mode, 0);
    if (j + NL < n) SUF(masked_step)(a, x, L, j0, j + NL, n, vbm, mk, mode, 1);
}

static void SUF(stats_loop_masked)(SUF(vsums) *a, const T *x, const SUF(lab) *L, ptrdiff_t j0, ptrdiff_t n,
                                   VT vbm, const uint8_t *mk) {
    int mode = SUF(lab_mode)(L);   /* masks come with label modes 0-2 (no class weights alone) */
    if (mode == 0) SUF(masked_loop)(a, x, L, j0, n, vbm, mk, 0);
    else if (mode == 1) SUF(masked_loop)(a, x, L, j0, n, vbm, mk, 1);
    else SUF(masked_loop)(a, x, L, j0, n, vbm, mk, 2);
}

/* sum over y != 0 of y (x - bm) in a block, guarded (stats_step's guard 0
 * gave NaN: a -inf logit with label 0, or labels that are NaN or infinite) */
static double SUF(block_yz)(const T *x, const SUF(lab) *L, ptrdiff_t j0, ptrdiff_t n, VT vbm, int mode) {
    VT zero = SUF(splat)(0), yz[2] = {zero, zero};
    for (ptrdiff_t j = 0; j < n; j += NL) {
        ptrdiff_t r = n - j;
        VT v = r >= NL ? SUF(load)(x + j) : SUF(load_part)(x + j, r, -TINF);
        VT w = mode == 1 ? SUF(lab_load)(L, j0 + j, r, 1) : mode == 2 ? SUF(lab_load)(L, j0 + j, r, 2)
                                                                       : SUF(lab_load)(L, j0 + j, r, 3);
        /* as stats_step, rounded alike: vector i of the block into yz[i & 1] */
        yz[(j / NL) & 1] = SUF(fmadd)(w, SUF(sel)(w != zero, v - vbm, zero), yz[(j / NL) & 1]);
    }
    return SUF(hsum)(yz[0] + yz[1]);
}

/* Statistics of one block (classes j0 .. j0 + n) with finite max bm: ties c
 * left out (see stats_loop; jt from block_max), rest = sum of exp(x - bm) over
 * the other elements; with labels also sum(y), the least
 * and largest label and sum over y != 0 of y (x - bm). */
static inline void SUF(block_stats)(const T *x, const SUF(lab) *L, ptrdiff_t j0, ptrdiff_t n, T bm,
                                    SUF(acc) *b, const uint8_t *mk, T *eo, ptrdiff_t jt) {
    VT zero = SUF(splat)(0), vbm = SUF(splat)(bm);
    SUF(vsums) a = {zero, zero, zero, zero, zero, zero, zero, zero, (VIT){0}};
    int mode = SUF(lab_mode)(L);
    if (mk) SUF(stats_loop_masked)(&a, x, L, j0, n, vbm, mk);
    else if (eo) switch (mode) {   /* the terms stored too: label modes 0-2 only (row_stats_gt) */
    /* guarded: eo may be x, which a second look at the block could not read */
    case 0: SUF(stats_loop)(&a, x, L, j0, n, vbm, 0, eo, 1, jt); break;
    case 1: SUF(stats_loop)(&a, x, L, j0, n, vbm, 1, eo, 1, jt); break;
    case 2: SUF(stats_loop)(&a, x, L, j0, n, vbm, 2, eo, 1, jt); break;
    default: abort();   /* no caller passes eo with modes 3-5 */
    }
    else switch (mode) {   /* one specialised loop per label mode */
    case 0: SUF(stats_loop)(&a, x, L, j0, n, vbm, 0, NULL, 0, jt); break;
    case 1: SUF(stats_loop)(&a, x, L, j0, n, vbm, 1, NULL, 0, jt); break;
    case 2: SUF(stats_loop)(&a, x, L, j0, n, vbm, 2, NULL, 0, jt); break;
    case 3: SUF(stats_loop)(&a, x, L, j0, n, vbm, 3, NULL, 0, jt); break;
    default: SUF(stats_loop)(&a, x, L, j0, n, vbm, 4, NULL, 0, jt); break;
    }
    b->m = bm;
    b->c = SUF(hcount)(a.c);
    b->rest = SUF(hsum)(a.s + a.s1) * SUMSCALE_INV;   /* VEXPSUM's scale out */
    b->sy = mode ? SUF(hsum)(a.sy + a.sy1) : 0;
    b->yz = mode ? SUF(hsum)(a.yz + a.yz1) : 0;
    if (b->yz != b->yz && !mk && !eo)   /* see stats_step's guard */
        b->yz = SUF(block_yz)(x, L, j0, n, vbm, mode);
    b->ymin = mode ? -SUF(hmax)(-a.ymin) : 0;
    b->ymax = mode ? SUF(hmax)(a.ymax) : 0;
    if (mode == 4) {
        const double *wb = L->wblk + 3 * (j0 / BLOCK);
        b->sy = wb[0];
        b->ymin = (T)wb[1];
        b->ymax = (T)wb[2];
    }
}

/* per block of BLOCK classes: the sum, least and largest weight (mode 4) */
static void SUF(weight_blocks)(const T *w, ptrdiff_t n, double *wblk) {
    VT zero = SUF(splat)(0);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += BLOCK) {
        ptrdiff_t end = n - j0 < BLOCK ? n : j0 + BLOCK;
        VT vs[2] = {zero, zero}, vlo = zero, vhi = zero;   /* lo and hi include 0, as block_stats' */
        ptrdiff_t j = j0;
        for (; j + NL <= end; j += NL) {        /* summed as block_stats does: vector i into vs[i & 1] */
            VT v = SUF(load)(w + j);            /* (once per call, not per row: memory is fine) */
            vs[((j - j0) / NL) & 1] += v;
            vlo = SUF(vmin)(v, vlo);              /* a NaN weight leaves lo and hi alone */
            vhi = SUF(vmax)(v, vhi);
        }
        if (j < end) {
            vs[((j - j0) / NL) & 1] += SUF(load_part)(w + j, end - j, 0);
            for (ptrdiff_t k = j; k < end; k++) {   /* the tail, without the zero pads */
                if (w[k] < vlo[0]) vlo[0] = w[k];
                if (w[k] > vhi[0]) vhi[0] = w[k];
            }
        }
        wblk[3 * (j0 / BLOCK)] = SUF(hsum)(vs[0] + vs[1]);
        wblk[3 * (j0 / BLOCK) + 1] = -SUF(hmax)(-vlo);
        wblk[3 * (j0 / BLOCK) + 2] = SUF(hmax)(vhi);
    }
}

/* sum over y_j != 0 of y_j d, for a block re-referenced from its max to a
 * larger one (d = block max - row max < 0): d sum(y) when d is finite; when d
 * is -inf (an all -inf block, or a +inf row max), -inf per positive label and
 * +inf per negative one, so mixed signs give NaN like the direct formula. */
static inline double SUF(shift_labels)(double d, const SUF(acc) *b) {
    if (d > -INFINITY) return d * b->sy;
    if (b->ymax > 0 && b->ymin < 0) return NAN;
    if (b->ymax > 0) return -INFINITY;
    if (b->ymin < 0) return INFINITY;
    return 0;
}

/* Merge block b into the row accumulator a (a->yz is relative to a->m). */
static inline void SUF(merge)(SUF(acc) *a, const SUF(acc) *b) {
    double yz_b = b->yz;
    if (b->m > a->m) {
        double w = exp((double)a->m - (double)b->m);   /* 0 when a->m = -inf */
        a->rest = (a->rest + (double)a->c) * w + b->rest;
        a->yz += SUF(shift_labels)((double)a->m - (double)b->m, a);
        a->c = b->c;
        a->m = b->m;
    } else if (b->m == a->m) {
        a->c += b->c;
        a->rest += b->rest;
    } else {  /* b->m < a->m */
        double w = exp((double)b->m - (double)a->m);
        a->rest += (b->rest + (double)b->c) * w;
        yz_b += SUF(shift_labels)((double)b->m - (double)a->m, b);
    }
    a->sy += b->sy;
    a->yz += yz_b;
    if (!(b->ymin >= a->ymin)) a->ymin = b->ymin;
    if (b->ymax > a->ymax) a->ymax = b->ymax;
}

/* M, s (and the sums of the labels L, or NULL) of a row in one read, over the
 * classes the mask mk includes (NULL: all).  Returns 0 when the row's softmax
 * is undefined (a NaN, or every element -inf; a->nan tells which) or when the
 * mask includes no class (a->any == 0). */
/* With gt and eq (not NULL, no mask) the same read also counts into *gt the
 * elements strictly greater than xl and into *eq those equal to it
 * (incomplete when the row holds a NaN).
 * With eo and bms (not NULL, no mask, labels of mode 0-2, n <= STORE_N), the
 * same read also writes each block's max to bms[j / BLOCK] and the terms
 * exp(x_j - block max) / SUMSCALE_INV to eo[j] (eo may be x: each x_j is read
 * before eo_j is written), so that a gradient or softmax pass needs no exp of
 * its own (stored_scale); a NaN stops it after the block that holds it
 * (whose terms, NaN among them, are written too: callers fill a NaN row). */
static inline int SUF(row_stats_gt)(const T *x, const SUF(lab) *L, ptrdiff_t n, SUF(acc) *a,
                                    const uint8_t *mk, T xl, int64_t *gt, int64_t *eq, T *eo, T *bms) {
    SUF(acc) b = {0};
    int any = !mk;
    *a = b;
    a->m = -TINF;
    for (ptrdiff_t j = 0; j < n; j += BLOCK) {
        ptrdiff_t len = n - j < BLOCK ? n - j : BLOCK;
        ptrdiff_t jt = -1;   /* the masked path tests every vector for ties */
        T bm = mk ? SUF(block_max_masked)(x + j, len, &a->nan, &any, mk + j)
             : gt ? SUF(block_max_gt)(x + j, len, &a->nan, xl, gt, eq, &jt)
                  : SUF(block_max)(x + j, len, &jt);
        if (a->nan) {          /* an included NaN: the row is undefined */
            a->any = 1;
            return 0;
        }
        if (eo) bms[j / BLOCK] = bm;
        if (bm == TINF || bm == -TINF)
            SUF(block_stats_inf)(x + j, L, j, len, bm, &b, mk ? mk + j : NULL, eo ? eo + j : NULL);
        else
            SUF(block_stats)(x + j, L, j, len, bm, &b, mk ? mk + j : NULL, eo ? eo + j : NULL, jt);
        if (b.nan || b.rest != b.rest) {   /* a NaN that block_max left out */
            a->nan = a->any = 1;
            return 0;
        }
        if (j == 0) *a = b; else SUF(merge)(a, &b);
        a->nan = 0;
    }
    a->any = any;
    return any && a->m != -TINF;
}

static inline int SUF(row_stats_masked)(const T *x, const SUF(lab) *L, ptrdiff_t n, SUF(acc) *a,
                                        const uint8_t *mk) {
    return SUF(row_stats_gt)(x, L, n, a, mk, 0, NULL, NULL, NULL, NULL);
}

static inline int SUF(row_stats)(const T *x, const SUF(lab) *L, ptrdiff_t n, SUF(acc) *a) {
    return SUF(row_stats_masked)(x, L, n, a, NULL);
}

/* s: the sum without one max term (the c - 1 other ties left out count 1 each) */
static inline double SUF(row_s)(const SUF(acc) *a) { return (double)(a->c - 1) + a->rest; }

/* Rows of at most STORE_N elements (1 MiB) keep their terms from
 * row_stats_gt for the output pass, which then multiplies instead of taking
 * an exp; longer rows take the exp again (storing would add a write and a
 * read of the row in memory).  Such a row, with a separate output and dense
 * labels up to 3 MiB, is beyond a 512 KiB L2 but within the L3; measured
 * (C harness, float32 loss+grad, separate gradient, one Zen 3 core, 16-32 MB
 * of rows): storing rows of 256 KiB, 512 KiB and 1 MiB took 0.71-0.79x
 * (sparse) and 0.75-0.92x (dense) the time of the second exp.  Many threads
 * with a small L3 may do better with a lower limit: not measured. */
#define STORE_N (1048576 / TBYTES)
#define STORE_NB (STORE_N / BLOCK)

/* exp(bm - M) for a stored block with max bm in a row with max M (0 when bm
 * is -inf; 1 when bm = M = +inf) */
static inline double SUF(stored_scale)(T bm, T m) { return bm == m ? 1.0 : exp((double)bm - (double)m); }

/* The factor f the output passes multiply a stored term e by: f = k
 * SUMSCALE_INV rounded to T (k in double), one multiply, e f rounded once;
 * exact scaling of (T)k while |k| SUMSCALE_INV is a normal number, so the
 * results are those of e (T)k SUMSCALE_INV where (T)k does not overflow
 * (dense labels summing past T's range, validate_labels=False: f stays
 * finite there).  Below that (|k| < 2^-62 in float, 2^-958 in double: a
 * block far below the row max, or dense labels of tiny sum), *two is set, f is (T)k and the caller multiplies (e
 * SUMSCALE_INV) f, rounded once while e SUMSCALE_INV is normal.  k = 0 (a
 * block of -inf, labels summing to 0), +-inf and NaN keep one multiply, with
 * the same result. */
static inline T SUF(stored_factor)(double k, int *two) {
    *two = k != 0 && fabs(k) < (TBYTES == 4 ? 0x1p-62 : 0x1p-958);
    return *two ? (T)k : (T)(k * SUMSCALE_INV);
}

/* logsumexp of a row from its statistics: NaN with a NaN, -inf for a row of
 * -inf, +inf when the max is +inf, else M + log1p(s) */
static inline T SUF(lse_of)(const SUF(acc) *a, int defined) {
    if (!defined) return a->nan ? (T)NAN : -TINF;
    if (a->m == TINF) return TINF;
    return (T)((double)a->m + log1p(SUF(row_s)(a)));
}

static inline void SUF(fill)(T *out, ptrdiff_t n, T v) {
    for (ptrdiff_t j = 0; j < n; j++) out[j] = v;
}

/* exp(x_j - M) for a row whose max M is +inf: 1 at the +inf ties, else 0 */
static inline T SUF(e_inf)(T xj) { return xj == TINF ? (T)1 : (T)0; }

/* 1 unless every label is >= 0 (not NaN) and |sum - 1| <= rtol; the sum
 * taken as block_stats takes it (vector i of a block into sy[i & 1], blocks
 * added in double), so that this check and the kernel pass's agree */
static int SUF(labels_invalid)(const T *y, ptrdiff_t n, double rtol) {
    VT zero = SUF(splat)(0), ymin = zero;
    double total = 0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += BLOCK) {
        ptrdiff_t end = n - j0 < BLOCK ? n : j0 + BLOCK, j = j0;
        VT s0 = zero, s1 = zero;   /* in registers: pairs, then the last full vector, then the tail */
        for (; j + 2 * NL <= end; j += 2 * NL) {
            VT a = SUF(load)(y + j), b = SUF(load)(y + j + NL);
            s0 += a;
            s1 += b;
            ymin = SUF(vmin)(SUF(vmin)(a, b), ymin);
        }
        if (j + NL <= end) {   /* an even vector of the block */
            VT a = SUF(load)(y + j);
            s0 += a;
            ymin = SUF(vmin)(a, ymin);
            j += NL;
        }
        if (j < end) {
            VT a = SUF(load_part)(y + j, end - j, 0);
            if (((j - j0) / NL) & 1) s1 += a; else s0 += a;
            ymin = SUF(vmin)(a, ymin);
        }
        total += SUF(hsum)(s0 + s1);
    }
    return !(-SUF(hmax)(-ymin) >= 0 && fabs(total - 1.0) <= rtol);
}

/* ---- row functions called by the Cython kernels -------------------------- */

/* v_in at the classes mk includes (all when mk is NULL), v_out at the others */
static void SUF(fill_masked)(T *out, ptrdiff_t n, T v_in, T v_out, const uint8_t *mk) {
    for (ptrdiff_t j = 0; j < n; j++) out[j] = !mk || mk[j] ? v_in : v_out;
}

/* x_j, or -inf for a class the mask excludes (scalar paths) */
static inline T SUF(x_in)(const T *x, const uint8_t *mk, ptrdiff_t j) { return !mk || mk[j] ? x[j] : -TINF; }

/* logits j .. j + NL (the first r), masked classes read as -inf */
static inline VT SUF(load_x)(const T *x, const uint8_t *mk, ptrdiff_t j, ptrdiff_t r) {
    VT v = r >= NL ? SUF(load)(x + j) : SUF(load_part)(x + j, r, -TINF);
    return mk ? SUF(sel)(SUF(mask_load)(mk + j, r), v, SUF(splat)(-TINF)) : v;
}

static inline void SUF(store_x)(T *p, ptrdiff_t j, ptrdiff_t r, VT v) {
    if (r >= NL) SUF(store)(p + j, v); else SUF(store_part)(p + j, v, r);
}

/* Output loops over p[j0:end] step by out_step elements: a whole vector, or
 * with sm (streaming) up to p's next VBYTES boundary, so that the whole
 * vectors after it are aligned for store_out's streaming stores (p must then
 * be aligned to its element size, as NumPy's arrays are) */
static inline ptrdiff_t SUF(out_step)(const T *p, ptrdiff_t j, ptrdiff_t end, int sm) {
    ptrdiff_t r = end - j < NL ? end - j : NL;
    ptrdiff_t off = (ptrdiff_t)((uintptr_t)(p + j) & (VBYTES - 1)) / TBYTES;
    if (sm && off && NL - off < r) r = NL - off;
    return r;
}

static inline void SUF(store_out)(T *p, ptrdiff_t j, ptrdiff_t r, VT v, int sm) {
    if (sm && r == NL && !((uintptr_t)(p + j) & (VBYTES - 1))) SUF(stream)(p + j, v);
    else SUF(store_x)(p, j, r, v);
}

/* softmax from the stored terms: p_j = e_j SUMSCALE_INV exp(bm - M) / (1 + s)
 * from e (row_stats_gt's eo; may be p), bms its block maxima; sm: see out_step;
 * p_lab = plab instead unless lab < 0 (a store of its own after streaming
 * stores would wait for the line from memory: 16384 x 1000 float32, 0.31 ->
 * 0.39 ns/logit with it) */
static void SUF(softmax_stored)(T *p, const T *e, ptrdiff_t n, const T *bms, T m, double inv, int sm,
                                ptrdiff_t lab, T plab) {
    VT unscale = SUF(splat)((T)SUMSCALE_INV);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += BLOCK) {
        int two;
        VT f = SUF(splat)(SUF(stored_factor)(SUF(stored_scale)(bms[j0 / BLOCK], m) * inv, &two));
        ptrdiff_t end = n - j0 < BLOCK ? n : j0 + BLOCK;
        if (!sm && lab < 0) {   /* plain vector steps: out_step's loop was 20-30% slower in place */
            for (ptrdiff_t j = j0; j < end; j += NL) {
                ptrdiff_t r = end - j;
                VT v = r >= NL ? SUF(load)(e + j) : SUF(load_part)(e + j, r, 0);
                SUF(store_x)(p, j, r, two ? (v * unscale) * f : v * f);
            }
            continue;
        }
        for (ptrdiff_t j = j0, r; j < end; j += r) {
            r = SUF(out_step)(p, j, end, sm);
            VT v = r >= NL ? SUF(load)(e + j) : SUF(load_part)(e + j, r, 0);
            v = two ? (v * unscale) * f : v * f;
            if ((size_t)(lab - j) < (size_t)r) v[lab - j] = plab;
            SUF(store_out)(p, j, r, v, sm);
        }
    }
}

/* The dense gradient from the terms stored in g[j0:end] (dense_row): g_j =
 * (e_j f - y_j) gscale, f = stored_factor (two: (e_j SUMSCALE_INV) f
 * instead of e_j f); ties: the block's max is the row's, where e_j = 1 /
 * SUMSCALE_INV the tie form ((sum(y) - y_j) - y_j s) / (1 + s). */
typedef struct { T f, inv, s, sy, gscale; } SUF(dstored);

static inline __attribute__((always_inline)) void SUF(dense_stored_out)(T *g, const T *eo, const SUF(lab) *L,
                                                                        ptrdiff_t j0, ptrdiff_t end, int mode,
                                                                        const SUF(dstored) *d, int two, int ties,
                                                                        int sm) {
    VT vf = SUF(splat)(d->f), vinv = SUF(splat)(d->inv), vs = SUF(splat)(d->s), vsy = SUF(splat)(d->sy);
    VT vg = SUF(splat)(d->gscale), unscale = SUF(splat)((T)SUMSCALE_INV), one = SUF(splat)((T)(1 / SUMSCALE_INV));
    for (ptrdiff_t j = j0, r; j < end; j += r) {
        r = SUF(out_step)(g, j, end, sm);
        VT e = r >= NL ? SUF(load)(eo + j) : SUF(load_part)(eo + j, r, 0);
        VT w = mode == 1 ? SUF(lab_load)(L, j, r, 1) : SUF(lab_load)(L, j, r, 2);
        VT gv = two ? (e * unscale) * vf - w : e * vf - w;
        if (ties) gv = SUF(sel)(e == one, ((vsy - w) - w * vs) * vinv, gv);
        if (d->gscale != 1) gv *= vg;
        SUF(store_out)(g, j, r, gv, sm);
    }
}

/* Dense labels:
 *   loss = log1p(s) sum(y) - sum_{y != 0} y (x - M)     (both terms >= 0 for y >= 0)
 *   grad = softmax sum(y) - y; at the ties of M written as
 *          ((sum(y) - y) - y s) / (1 + s), which keeps -s / (1 + s) for a
 *          confident one-hot row where 1 / (1 + s) - 1 would round to 0.
 * The gradient is multiplied by gscale.  g may be x (each x_j is read before
 * g_j is written).  mk (or NULL): the classes included (optax's where=):
 * the others drop out of the softmax and their labels are ignored; a row with
 * no class included has loss 0 and gradient 0. */
static T SUF(dense_row)(const T *x, const SUF(lab) *L, T *g, ptrdiff_t n, T gscale, double rtol,
                        int8_t *invalid, T *lse, const uint8_t *mk, T *scr, int sm) {
    SUF(acc) a;
    int mode = SUF(lab_mode)(L);
    T bms[STORE_NB];
    int st = g && !mk && n <= STORE_N && (mode == 1 || mode == 2);   /* the terms kept in g (or scr) */
    T *eo = scr ? scr : g;
    int defined = SUF(row_stats_gt)(x, L, n, &a, mk, 0, NULL, NULL, st ? eo : NULL, bms);
    if (lse) *lse = a.any ? SUF(lse_of)(&a, defined) : -TINF;
    if (invalid)   /* labels are checked as given; NaN logits or a mask stop row_stats' sums */
        *invalid = a.nan || mk ? SUF(labels_invalid)(L->y, n, rtol)
                               : !(a.ymin >= 0 && fabs(a.sy - 1.0) <= rtol);
    if (!defined) {   /* NaN at the included classes of an undefined row, 0 elsewhere */
        if (g) SUF(fill_masked)(g, n, a.any ? (T)NAN : 0, 0, mk);
        return a.any ? (T)NAN : 0;
    }
    double s = SUF(row_s)(&a);
    T loss = (T)(log1p(s) * a.sy - a.yz);
    if (g && st) {
        /* g holds e = exp(x - bm) / SUMSCALE_INV per block of max bm: softmax
         * sum(y) = e SUMSCALE_INV exp(bm - M) sum(y) / (1 + s); the ties of M
         * are where bm = M and e = 1 / SUMSCALE_INV (also x = +inf ties of a
         * +inf row, see block_stats_inf) */
        SUF(dstored) d = {.inv = (T)(1.0 / (1.0 + s)), .s = (T)s, .sy = (T)a.sy, .gscale = gscale};
        for (ptrdiff_t j0 = 0; j0 < n; j0 += BLOCK) {
            T bm = bms[j0 / BLOCK];
            int two;
            d.f = SUF(stored_factor)(SUF(stored_scale)(bm, a.m) * a.sy / (1.0 + s), &two);
            ptrdiff_t end = n - j0 < BLOCK ? n : j0 + BLOCK;
            /* one loop per case (GCC would not take all the tests out of one);
             * a factor that is not normal is rare: one loop with the tests */
            int ties = bm == a.m;
            if (two) SUF(dense_stored_out)(g, eo, L, j0, end, mode, &d, 1, ties, sm);
            else if (mode == 1 && ties) SUF(dense_stored_out)(g, eo, L, j0, end, 1, &d, 0, 1, sm);
            else if (mode == 1) SUF(dense_stored_out)(g, eo, L, j0, end, 1, &d, 0, 0, sm);
            else if (ties) SUF(dense_stored_out)(g, eo, L, j0, end, 2, &d, 0, 1, sm);
            else SUF(dense_stored_out)(g, eo, L, j0, end, 2, &d, 0, 0, sm);
        }
    } else if (g) {
        T inv = (T)(1.0 / (1.0 + s)), ts = (T)s, tsy = (T)a.sy;
        if (a.m == TINF) {
            for (ptrdiff_t j = 0; j < n; j++) {
                if (mk && !mk[j]) { g[j] = 0; continue; }   /* not 0 * sum(y) when sum(y) is NaN */
                T xj = x[j], yj = SUF(lab_at)(L, j, mode);
                g[j] = gscale * (xj == a.m ? ((tsy - yj) - yj * ts) * inv : SUF(e_inf)(xj) * tsy * inv - yj);
            }
            return loss;
        }
        VT vm = SUF(splat)(a.m), vpk = SUF(splat)(tsy * inv), vinv = SUF(splat)(inv);
        VT vs = SUF(splat)(ts), vsy = SUF(splat)(tsy), vg = SUF(splat)(gscale), zero = SUF(splat)(0);
        for (ptrdiff_t j = 0, r; j < n; j += r) {
            r = SUF(out_step)(g, j, n, sm);
            VT v = SUF(load_x)(x, mk, j, r);
            VT w = mode == 1 ? SUF(lab_load)(L, j, r, 1) : SUF(lab_load)(L, j, r, 2);
            VT gv = SUF(sel)(v == vm, ((vsy - w) - w * vs) * vinv, SUF(exp_neg)(v - vm) * vpk - w);
            if (gscale != 1) gv *= vg;
            /* an excluded class: gradient 0, also when sum(y) is NaN or inf
             * (labels not validated), where exp(-inf) * sum(y) would be NaN */
            if (mk) gv = SUF(sel)(SUF(mask_load)(mk + j, r), gv, zero);
            SUF(store_out)(g, j, r, gv, sm);
        }
    }
    return loss;
}

/* Sparse labels: loss = log1p(s) - (x_label - M); grad = softmax - onehot(label),
 * at a label that ties the max written as -s / (1 + s).  g may be x.  With a
 * mask, as optax: the label's own logit is used even when its class is
 * excluded (its gradient is then -1); a row with no class included has loss 0
 * and gradient 0. */
static T SUF(sparse_row)(const T *x, ptrdiff_t label, T *g, ptrdiff_t n, T *lse, const uint8_t *mk, T *scr,
                         int sm) {
    SUF(acc) a;
    T xl = x[label];
    T bms[STORE_NB];
    int st = g && !mk && n <= STORE_N;   /* the terms kept in g or scr (see row_stats_gt) */
    T *eo = scr ? scr : g;
    int defined = SUF(row_stats_gt)(x, NULL, n, &a, mk, 0, NULL, NULL, st ? eo : NULL, bms);
    if (lse) *lse = a.any ? SUF(lse_of)(&a, defined) : -TINF;
    if (!defined) {   /* NaN at the included classes of an undefined row, 0 elsewhere */
        if (g) {
            SUF(fill_masked)(g, n, a.any ? (T)NAN : 0, 0, mk);
            if (a.any && mk && !mk[label]) g[label] = -1;
        }
        return a.any ? (T)NAN : 0;
    }
    double s = SUF(row_s)(&a);
    int label_in = !mk || mk[label];
    double zl = xl == a.m && label_in ? 0.0 : (double)xl - (double)a.m;
    T loss = (T)(log1p(s) - zl);
    if (g) {
        double inv = 1.0 / (1.0 + s);
        T tinv = (T)inv, gl = !label_in ? (T)-1 : xl == a.m ? (T)(-s * inv) : (T)(exp(zl) * inv - 1.0);
        ptrdiff_t lab = sm ? label : -1;   /* streaming: g[label] written in its vector */
        if (st) {
            SUF(softmax_stored)(g, eo, n, bms, a.m, inv, sm, lab, gl);
        } else if (a.m == TINF) {
            for (ptrdiff_t j = 0; j < n; j++) g[j] = SUF(e_inf)(SUF(x_in)(x, mk, j)) * tinv;
        } else {
            VT vm = SUF(splat)(a.m), vinv = SUF(splat)(tinv);
            for (ptrdiff_t j = 0, r; j < n; j += r) {
                r = SUF(out_step)(g, j, n, sm);
                VT v = SUF(exp_neg)(SUF(load_x)(x, mk, j, r) - vm) * vinv;
                if ((size_t)(lab - j) < (size_t)r) v[lab - j] = gl;
                SUF(store_out)(g, j, r, v, sm);
            }
        }
        if (lab < 0 || (!st && a.m == TINF)) g[label] = gl;   /* else written in its vector */
    }
    return loss;
}

/* Scoring (xentc.score): for row i with class label[i] (the argmax of the
 * dense labels y when y is given) one read of the row gives
 *   loss  = log1p(s) - z_label             (sparse; y NULL), or
 *           log1p(s) sum(y) - sum_{y != 0} y z   (dense, as dense_row),
 *   lse   = M + log1p(s)                   (or NULL),
 *   pmax  = max softmax = exp(M - lse) = 1 / (1 + s)   (the confidence, in
 *           double for every T: ECE bins it, and 1 / C rounded to float
 *           could cross a bin edge),
 *   rank  = #{j : x_j > x_label} + #{j < label : x_j == x_label}: the label's
 *           place when the row is sorted by decreasing logit, ties by index
 *           (a stable sort; rank 0 iff argmax, the first max, is the label;
 *           top-k hit = rank < k).  The ties before the label are counted by
 *           a second look at x[0:label] only when the row has any.
 * A row whose softmax is undefined (a NaN, or every logit -inf) gets NaN loss
 * and pmax and rank = INT64_MAX (a miss for every k); with a +inf max pmax =
 * 1 / (number of +inf).
 * invalid (dense only, or NULL): as dense_row, labels that are not a
 * distribution within rtol. */
static void SUF(score_row)(const T *x, ptrdiff_t label, const T *y, ptrdiff_t n, double rtol,
                           T *loss, T *lse, double *pmax, int64_t *rank, int8_t *invalid) {
    SUF(acc) a;
    SUF(lab) L = {y, NULL, 1, 0, NULL};
    int64_t gt = 0, eq = 0;   /* row-wide counts: may exceed 2^31 (not a long: 32 bits on Windows) */
    T xl = x[label];
    int defined = SUF(row_stats_gt)(x, y ? &L : NULL, n, &a, NULL, xl, &gt, &eq, NULL, NULL);
    if (lse) *lse = SUF(lse_of)(&a, defined);
    if (invalid)
        *invalid = a.nan ? SUF(labels_invalid)(y, n, rtol) : !(a.ymin >= 0 && fabs(a.sy - 1.0) <= rtol);
    if (!defined) {
        *loss = (T)NAN;
        *pmax = NAN;
        *rank = INT64_MAX;
        return;
    }
    double s = SUF(row_s)(&a);
    if (y) {
        *loss = (T)(log1p(s) * a.sy - a.yz);
    } else {
        double zl = xl == a.m ? 0.0 : (double)xl - (double)a.m;
        *loss = (T)(log1p(s) - zl);
    }
    *pmax = 1.0 / (1.0 + s);
    if (eq > 1)   /* other elements equal the label's logit: those before it rank higher */
        for (ptrdiff_t j = 0; j < label; j++) gt += x[j] == xl;
    *rank = gt;
}

static void SUF(score_rows)(const T *x, const int64_t *labels, const T *y, T *loss, T *lse, double *pmax,
                            int64_t *rank, ptrdiff_t nrows, ptrdiff_t n, double rtol, int8_t *invalid) {
    /* one row at a time for any n: scoring is for many classes, and the
     * rows-per-lane path of few classes would need its own rank count */
    for (ptrdiff_t i = 0; i < nrows; i++)
        SUF(score_row)(x + i * n, (ptrdiff_t)labels[i], y ? y + i * n : NULL, n, rtol, loss + i,
                       lse ? lse + i : NULL, pmax + i, rank + i, invalid ? invalid + i : NULL);
}

/* softmax = exp(x - M) / (1 + s); p may be x; excluded classes and rows with
 * no class included get 0 */
static void SUF(softmax_row)(const T *x, T *p, ptrdiff_t n, const uint8_t *mk) {
    SUF(acc) a;
    T bms[STORE_NB];
    int st = !mk && n <= STORE_N;   /* the terms kept in p (see row_stats_gt) */
    if (!SUF(row_stats_gt)(x, NULL, n, &a, mk, 0, NULL, NULL, st ? p : NULL, bms)) {
        SUF(fill_masked)(p, n, a.any ? (T)NAN : 0, 0, mk);
        return;
    }
    if (st) {
        SUF(softmax_stored)(p, p, n, bms, a.m, 1.0 / (1.0 + SUF(row_s)(&a)), 0, -1, 0);
        return;
    }
    T inv = (T)(1.0 / (1.0 + SUF(row_s)(&a)));
    if (a.m == TINF) {
        for (ptrdiff_t j = 0; j < n; j++) p[j] = SUF(e_inf)(SUF(x_in)(x, mk, j)) * inv;
        return;
    }
    VT vm = SUF(splat)(a.m), vinv = SUF(splat)(inv);
    for (ptrdiff_t j = 0; j < n; j += NL) {
        ptrdiff_t r = n - j;
        SUF(store_x)(p, j, r, SUF(exp_neg)(SUF(load_x)(x, mk, j, r) - vm) * vinv);
    }
}

/* log_softmax = (x - M) - log1p(s), with x - M = 0 at the ties; out may be x;
 * excluded classes and rows with no class included get -inf */
static void SUF(log_softmax_row)(const T *x, T *out, ptrdiff_t n, const uint8_t *mk) {
    SUF(acc) a;
    if (!SUF(row_stats_masked)(x, NULL, n, &a, mk)) {
        SUF(fill_masked)(out, n, a.any ? (T)NAN : -TINF, -TINF, mk);
        return;
    }
    T lse = (T)log1p(SUF(row_s)(&a));
    VT vm = SUF(splat)(a.m), zero = SUF(splat)(0), vl = SUF(splat)(lse);
    for (ptrdiff_t j = 0; j < n; j += NL) {
        ptrdiff_t r = n - j;
        VT v = SUF(load_x)(x, mk, j, r);
        SUF(store_x)(out, j, r, SUF(sel)(v == vm, zero, v - vm) - vl);
    }
}

/* logsumexp = M + log1p(s); -inf for a row of -inf or with no class included,
 * +inf when M = +inf */
static T SUF(logsumexp_row)(const T *x, ptrdiff_t n, const uint8_t *mk) {
    SUF(acc) a;
    int defined = SUF(row_stats_masked)(x, NULL, n, &a, mk);
    return a.any ? SUF(lse_of)(&a, defined) : -TINF;
}

/* ---- rows of few classes: one row per vector lane ------------------------
 *
 * With n <= SMALL_N classes a row fills less than a few vectors, and per-row
 * reductions (max, sums, log1p) would cost more than the row's exps.  Here
 * NL rows are processed at once, one per lane: column j of the group
 * (x[lane * n + j]) is gathered, or taken from row loads and a transpose in
 * registers (load_cols, see transposable below), so max, sums and log1p are
 * plain lane-wise vector operations.  On AVX2 and AVX-512 (transposable n)
 * the gradient is made column by column and stored by the inverse transpose
 * (store_cols); elsewhere the
 * group's nr * n elements are walked in vectors and each element finds its
 * row's statistics by a lane permute.  Every row goes through the same lane
 * operations whatever its position, so results do not depend on how rows
 * are split among threads.
 */
#undef SMALL_N
#define SMALL_N 32

/* lane i holds i * n: each lane's row offset in a group of NL rows.  Built
 * from a constant, not lane by lane (lane stores would be read back as one
 * vector through a stalled store forward, once per group). */
static inline VIT SUF(row_offsets)(ptrdiff_t n) {
#if TBYTES == 4
    typedef int32_t E;
#else
    typedef int64_t E;
#endif
    static const E iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    VIT v;
    __builtin_memcpy(&v, iota, sizeof v);
    return v * ((VIT){0} + (E)n);
}

/* NL int64 labels */
typedef int64_t SUF(v64) __attribute__((vector_size(NL * 8)));

/* a - t b, exactly (t b close to a): one FMA, or without a fast one Dekker's
 * exact product t b = p + p_err (Veltkamp's splits) and a - p (Sterbenz) */
static inline VT SUF(fma_residual)(VT a, VT t, VT b) {
#if ISA_KIND == 2 || ISA_KIND == 3 || XT_FAST_FMA
    return SUF(fmadd)(-t, b, a);
#else
    const T split = TBYTES == 4 ? 4097.0f : 134217729.0;   /* 2^12 + 1, 2^27 + 1 */
    VT ct = t * split, cb = b * split;
    VT th = ct - (ct - t), tl = t - th, bh = cb - (cb - b), bl = b - bh;
    VT p = t * b, p_err = ((th * bh - p) + th * bl + tl * bh) + tl * bl;
    return (a - p) - p_err;
#endif
}

/* log1p(s) for 0 <= s < 32 (a row's sum without its max term), lane-wise:
 * log(1 + s) = e ln 2 + log(f) with 1 + s = 2^e f, f in [sqrt(1/2),
 * sqrt(2)) (e and f from the bits of u = 1 + s rounded), log(f) = 2
 * atanh(t) = 2t + 2t t^2 P(t^2), |t| <= 0.172, and
 *   t = (f - 1) / (f + 1) = (s + (1 - 2^e)) / (s + (1 + 2^e)) = a / b,
 * taken from s itself, not from u: 1 - 2^e and 1 + 2^e are exact, a is s
 * itself at e = 0 (so tiny s come back exactly) and exact where it cancels
 * (Sterbenz).  One division; an earlier form took a second one for the
 * rounding of 1 + s (C harness, one Zen 4 core, float64 sparse loss at 10
 * classes 0.853 -> 0.845 ns/logit).
 * float also adds t - t0 (t0 = a / b rounded, about an ulp off):
 *   t - t0 = ((a - t0 b) - t0 b_err) / b
 * from the division's residual (exact: fma_residual), b's rounding error
 * (Fast2Sum, exact as 1 + 2^e, in [2^e, 2^(e+1)), has no smaller exponent
 * than s < 2^(e+1)) and 1 / b = (1 - t0) 2^-(e+1) (b - a = 2^(e+1));
 * a's own rounding (e >= 1 only, where e ln 2 dominates) is left.  The loss
 * of a row [0, z, -inf, ...], log1p(exp(z)), is then within 2.1 ulp on
 * AVX-512 (1.7 on AVX2) where t0 alone gave 3.6 (test_numerics), for 0.430
 * -> 0.448 ns/logit (float32 sparse loss, 32768 x 10, as above).  float64
 * (2.4 ulp with t0 alone) keeps its speed. */
static inline VT SUF(log1p_pos)(VT s) {
    VT one = SUF(splat)(1), u = one + s;
#if TBYTES == 4
    VIT bits = (VIT)u;
    VIT e = ((bits >> 23) & 0xff) - 127;
    VT f = (VT)((bits & 0x7fffff) | 0x3f800000);
    const int nterms = 4;
    static const T c[] = {1.0f / 3, 1.0f / 5, 1.0f / 7, 1.0f / 9};
#else
    VIT bits = (VIT)u;
    VIT e = ((bits >> 52) & 0x7ff) - 1023;
    VT f = (VT)((bits & 0xfffffffffffffLL) | 0x3ff0000000000000LL);
    const int nterms = 10;
    static const T c[] = {1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11,
                          1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};
#endif
    e = e - (VIT)(f > SUF(splat)((T)1.41421356237309504880));   /* f / 2, e + 1 (true is -1) */
    VT ef = __builtin_convertvector(e, VT);
#if TBYTES == 4
    VT p2 = (VT)((e + 127) << 23);                  /* 2^e */
#else
    VT p2 = (VT)((e + 1023) << 52);
#endif
    VT ca = one - p2, cb = one + p2;
    VT a = s + ca, b = s + cb;
    VT t = a / b, t2 = t * t;
    VT p = SUF(splat)(c[nterms - 1]);
    for (int i = nterms - 2; i >= 0; i--) p = p * t2 + c[i];
    VT tt = t + t, tail = tt * (t2 * p);
#if TBYTES == 4
    VT b_err = s - (b - cb);                            /* Fast2Sum: b + b_err = s + cb */
    VT res = SUF(fma_residual)(a, t, b);                /* a - t b, exact */
    VT half_inv = (VT)((126 - e) << 23);                /* 2^-(e+1) */
    VT dt = (res - t * b_err) * ((one - t) * half_inv);
    tail += dt + dt;
#endif
    return ef * (T)0.693147180369123816490 + (ef * (T)1.90821492927058770002e-10 + (tt + tail));
}

/* invalid[i], i < nr: 1 where lane i's labels are not a distribution (least
 * label ymin < 0, or sum sy off 1 by more than rtol, tested in double).  A
 * full group whose sums are all within rtol / 2 of 1 in T is valid at once
 * (sy - 1 is exact near 1, and off by a rounding at most elsewhere); any
 * other group, NaN sums included, takes the exact test lane by lane. */
static inline void SUF(lanes_invalid)(int8_t *invalid, VT ymin, VT sy, ptrdiff_t nr, double rtol) {
    VT d = sy - 1, half = SUF(splat)((T)(0.5 * rtol));
    VIT ok = (ymin >= 0) & (d <= half) & (-d <= half);
    if (nr == NL && SUF(hcount)(ok) == NL) {
        __builtin_memset(invalid, 0, NL);
        return;
    }
    for (ptrdiff_t i = 0; i < nr; i++)
        invalid[i] = !(ymin[i] >= 0 && fabs((double)sy[i] - 1.0) <= rtol);
}

typedef struct {
    VT m, s, sy, yz, ymin; /* row max, s, label sum, sum y (x - m), least label */
    VT swz;                /* sum over classes of w_j (x_j - m), with class weights */
    VIT bad, undefined;    /* NaN present; NaN present or every element -inf */
} SUF(lanes);

/* Rows of NL to SMALL_N classes (AVX2) or 8 to 16 classes (AVX-512, float
 * or double) are loaded by transposes in registers (load_cols) instead of one
 * gather per column, and the gradient is built column by column from the
 * kept exps and stored by the inverse transpose (store_cols).  Elsewhere the
 * gradient pass reloads the rows and permutes the statistics. */
#undef XT_COLS_OUT
#if ISA_KIND == 2
#define XT_COLS_OUT 1
static inline int SUF(transposable)(ptrdiff_t n) { return n >= NL && n <= SMALL_N; }
#elif ISA_KIND == 3
#define XT_COLS_OUT 1
static inline int SUF(transposable)(ptrdiff_t n) { return n >= 8 && n <= 16; }
#else
#define XT_COLS_OUT 0
static inline int SUF(transposable)(ptrdiff_t n) { (void)n; return 0; }
#endif

/* A count of ties in lanes, or a label (class index), 0 <= c < 2^23, as T
 * (a power-of-two bias for int64: AVX2 has no conversion of it, and GCC
 * converts lane by lane through scalar registers) */
static inline VT SUF(count_to_T)(VIT c) {
#if TBYTES == 4
    return __builtin_convertvector(c, VT);
#else
    return (VT)(c | 0x4330000000000000LL) - (T)0x1p52;
#endif
}

/* GCC 12 at -O3 warns that ycols[j] may be read uninitialised, in
 * lane_stats as inlined into the loss of dense_rows_small_n (AVX2, double)
 * and in that function's column loop: load_cols writes every ycols[j], j <
 * n, whenever it transposes (the only case either reads them unwritten),
 * which GCC cannot prove.  Off from here to the end of dense_rows_small_n. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/* Statistics of rows [0, nr) (nr <= NL) of x with n <= SMALL_N columns. */
/* y (or NULL): dense labels, column j into ycols[j]; wcol (or NULL): one
 * weight per column, the same for every row.  cols[j] receives column j of
 * x; with keep_e (transposable n only) it ends as exp(z_j) / SUMSCALE_INV
 * instead (1 / SUMSCALE_INV at ties of the max, 0 at and below ZSUM).
 * The max pass skips NaNs (vmax keeps its second operand); a NaN's term is
 * NaN (exp_neg_sum keeps it), so the sum of the terms off the ties is NaN
 * exactly where a NaN was seen.  z = x - m is taken as 0 at ties only where
 * it is used there (kept exps, labels, class weights): at the ties of an
 * infinite m (+inf, or a row of -inf) it is NaN, whose term the sum leaves
 * out like every tie's. */
static inline __attribute__((always_inline)) void SUF(lane_stats)(const T *x, const T *y, const T *wcol,
                                                                  ptrdiff_t nr, ptrdiff_t n, SUF(lanes) *L,
                                                                  VT *cols, VT *ycols, int keep_e) {
    VIT rowoff = SUF(row_offsets)(n);
    VT m = SUF(splat)(-TINF), zero = SUF(splat)(0);
#if ISA_KIND == 2 || ISA_KIND == 3
    int transposed = SUF(transposable)(n);
    if (transposed) {
        SUF(load_cols)(x, n, nr, cols);
        if (y) SUF(load_cols)(y, n, nr, ycols);
    }
#else
    const int transposed = 0;
#endif
    _Pragma("GCC unroll 16")
    for (ptrdiff_t j = 0; j < n; j++) {
        VT v = transposed ? cols[j] : (cols[j] = SUF(gather)(x + j, rowoff, nr, 0));
        m = SUF(vmax)(v, m);
    }
    VT rest = zero, sy = zero, yz = zero, ymin = zero, swz = zero;
    VIT ties = (VIT){0};                            /* minus the count of ties */
    int zero_ties = y || wcol || keep_e;
    _Pragma("GCC unroll 16")
    for (ptrdiff_t j = 0; j < n; j++) {
        VT v = cols[j];
        VT z = v - m;
        if (zero_ties) z = SUF(sel)(v == m, zero, z);   /* 0 at ties, also for m = +-inf */
        VT e = SUF(exp_neg_sum)(z);
        SUF(add_nontie)(&rest, &ties, v, m, e);
        if (keep_e) cols[j] = e;
        if (y) {
            VT w = transposed ? ycols[j] : (ycols[j] = SUF(gather)(y + j, rowoff, nr, 0));
            sy += w;
            yz += SUF(sel)(w != zero, w * z, zero);
            ymin = SUF(vmin)(w, ymin);
        }
        if (wcol && wcol[j] != 0)
            swz += wcol[j] * z;
    }
    L->ymin = ymin;
    L->swz = swz;
    L->m = m;
    L->s = (SUF(count_to_T)(-ties) - 1) + rest * (T)SUMSCALE_INV;   /* VEXPSUM's scale out */
    L->sy = sy;
    L->yz = yz;
    L->bad = rest != rest;
    L->undefined = L->bad | (m == SUF(splat)(-TINF));
}

/* A group's loss waits, with up to XT_BATCH - 1 others, for its log1p(s):
 * loss = P log1p(s) + Q and lse = log1p(s) + QL lane by lane.  log1p (a
 * division and a polynomial, some 50 cycles of latency) would otherwise end
 * every group's chain of latencies; a batch's are independent and overlap.
 * (C harness, one core, 10 float32 classes in cache: sparse loss 0.98 -> 0.81 ns
 * per logit, dense 1.08 -> 0.93.) */
#undef XT_BATCH
#define XT_BATCH 8
typedef struct {
    VT s[XT_BATCH], p[XT_BATCH], q[XT_BATCH], ql[XT_BATCH];
    ptrdiff_t r0;   /* the first group's first row */
    int k;          /* groups waiting */
} SUF(pend);

static inline __attribute__((always_inline)) void SUF(pend_flush)(SUF(pend) *B, T *loss, T *lse,
                                                                   ptrdiff_t nrows) {
    for (int k = 0; k < B->k; k++) {
        ptrdiff_t r0 = B->r0 + k * NL, nr = nrows - r0 < NL ? nrows - r0 : NL;
        VT lg = SUF(log1p_pos)(B->s[k]);
        VT lv = B->p[k] * lg + B->q[k];
        if (nr == NL) SUF(store)(loss + r0, lv); else SUF(store_part)(loss + r0, lv, nr);
        if (lse) {
            VT le = lg + B->ql[k];
            if (nr == NL) SUF(store)(lse + r0, le); else SUF(store_part)(lse + r0, le, nr);
        }
    }
    B->k = 0;
}

/* queue the group of rows from r0; its lse is the max + log1p(s) (+inf at a
 * +inf max, -inf for rows of -inf), NaN where a NaN was seen.  s is in
 * [0, n) except in a row with a NaN, where it is NaN (the sum of the terms
 * off the ties keeps it, see lane_stats); it is taken as 0 there, so that a
 * zero P still gives 0 (an ignored row) and Q or QL carry the NaN. */
static inline __attribute__((always_inline)) void SUF(pend_add)(SUF(pend) *B, ptrdiff_t r0, const SUF(lanes) *L,
                                                                 VT p, VT q, T *loss, T *lse, ptrdiff_t nrows) {
    if (B->k == 0) B->r0 = r0;
    B->s[B->k] = SUF(sel)(L->bad, SUF(splat)(0), L->s);
    B->p[B->k] = p;
    B->q[B->k] = q;
    if (lse) B->ql[B->k] = SUF(sel)(L->bad, SUF(splat)((T)NAN), L->m);
    if (++B->k == XT_BATCH) SUF(pend_flush)(B, loss, lse, nrows);
}

static inline __attribute__((always_inline)) void SUF(dense_rows_small_n)(
        const T *x, const T *y, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n, T gscale, double rtol,
        int8_t *invalid, T *lse) {
    VIT rowidx[SMALL_N];
    for (ptrdiff_t k = 0; k < n; k++)
        for (int i = 0; i < NL; i++) rowidx[k][i] = (k * NL + i) / n;
    VT nan = SUF(splat)((T)NAN), zero = SUF(splat)(0);
    int cols_out = XT_COLS_OUT && g && SUF(transposable)(n);
    SUF(pend) B = {.k = 0};
    for (ptrdiff_t r0 = 0; r0 < nrows; r0 += NL) {
        ptrdiff_t nr = nrows - r0 < NL ? nrows - r0 : NL;
        const T *xb = x + r0 * n, *yb = y + r0 * n;
        SUF(lanes) L;
        VT cols[SMALL_N], ycols[SMALL_N];
        SUF(lane_stats)(xb, yb, NULL, nr, n, &L, cols, ycols, cols_out);
        /* loss = log1p(s) sy - yz */
        SUF(pend_add)(&B, r0, &L, L.sy, SUF(sel)(L.undefined, nan, -L.yz), loss, lse, nrows);
        if (invalid)   /* lanes see every label, NaN logits or not */
            SUF(lanes_invalid)(invalid + r0, L.ymin, L.sy, nr, rtol);
        if (!g) continue;
        VT inv = 1 / (1 + L.s), pk = L.sy * inv;
        T *gb = g + r0 * n;
#if XT_COLS_OUT
        if (cols_out) {
            /* column j: e_j p_k - y_j, and where e_j = 1 / SUMSCALE_INV (a tie of
             * the max, or an element whose exp rounds to 1) the same as
             * ((sy - y_j) - y_j s) / (1 + s), which keeps a gradient near 0 exact */
            VT one_e = SUF(splat)((T)(1 / SUMSCALE_INV));
            _Pragma("GCC unroll 16")
            for (ptrdiff_t j = 0; j < n; j++) {
                VT e = cols[j], w = ycols[j];
                VT gt = ((L.sy - w) - w * L.s) * inv;
                VT gv = SUF(sel)(e == one_e, gt, (e * (T)SUMSCALE_INV) * pk - w);
                cols[j] = SUF(sel)(L.undefined, nan, gv) * gscale;
            }
            SUF(store_cols)(gb, n, nr, cols);
            continue;
        }
#endif
        ptrdiff_t total = nr * n;
        for (ptrdiff_t k = 0; k * NL < total; k++) {
            ptrdiff_t r = total - k * NL;
            VT v = r >= NL ? SUF(load)(xb + k * NL) : SUF(load_part)(xb + k * NL, r, 0);
            VT w = r >= NL ? SUF(load)(yb + k * NL) : SUF(load_part)(yb + k * NL, r, 0);
            VT m = SUF(permute)(L.m, rowidx[k]);
            VIT tie = v == m;
            VT e = SUF(exp_neg)(SUF(sel)(tie, zero, v - m));
            VT gt = ((SUF(permute)(L.sy, rowidx[k]) - w) - w * SUF(permute)(L.s, rowidx[k]))
                    * SUF(permute)(inv, rowidx[k]);
            VT gv = SUF(sel)(tie, gt, e * SUF(permute)(pk, rowidx[k]) - w);
            gv = SUF(sel)((VIT)SUF(permute)((VT)L.undefined, rowidx[k]), nan, gv) * gscale;
            if (r >= NL) SUF(store)(gb + k * NL, gv); else SUF(store_part)(gb + k * NL, gv, r);
        }
    }
    SUF(pend_flush)(&B, loss, lse, nrows);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* The few-class row functions are compiled once more for each column count
 * from 8 (AVX2 double: 4) to 16 that load_cols transposes, with n a constant:
 * the column loops unroll and the columns stay in registers (a third faster
 * at 10 classes than with n a variable, in a C harness on one core). */
#undef XT_SMALL_N
#if ISA_KIND == 3 || (ISA_KIND == 2 && TBYTES == 4)
#define XT_SMALL_N(CALL) \
    switch (n) { \
    case 8: CALL(8); return; case 9: CALL(9); return; case 10: CALL(10); return; \
    case 11: CALL(11); return; case 12: CALL(12); return; case 13: CALL(13); return; \
    case 14: CALL(14); return; case 15: CALL(15); return; case 16: CALL(16); return; \
    default: break; \
    }
#elif ISA_KIND == 2 && TBYTES == 8
#define XT_SMALL_N(CALL) \
    switch (n) { \
    case 4: CALL(4); return; case 5: CALL(5); return; case 6: CALL(6); return; \
    case 7: CALL(7); return; case 8: CALL(8); return; case 9: CALL(9); return; \
    case 10: CALL(10); return; case 11: CALL(11); return; case 12: CALL(12); return; \
    case 13: CALL(13); return; case 14: CALL(14); return; case 15: CALL(15); return; \
    case 16: CALL(16); return; \
    default: break; \
    }
#else
#define XT_SMALL_N(CALL)
#endif

static void SUF(dense_rows_small)(const T *x, const T *y, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n,
                                  T gscale, double rtol, int8_t *invalid, T *lse) {
    /* The plain loss again with g and lse constants (NULL): the column loops
     * then do not test g (through keep_e) per column, nor pend_add lse per
     * group.  C harness, one core of a 2-vCPU AMD EPYC (Zen 4) VM, AVX-512,
     * 32768 x 10 in cache, ns/logit: float32 dense loss 0.60 -> 0.56,
     * float64 1.12 either way (AVX2 0.75 either way, float64 1.88 -> 1.84);
     * with a gradient no faster (float64 4% slower), so only the loss. */
    if (!g && !lse) {
#define XT_CALL(k) SUF(dense_rows_small_n)(x, y, loss, NULL, nrows, k, gscale, rtol, invalid, NULL)
        XT_SMALL_N(XT_CALL)
#undef XT_CALL
    }
#define XT_CALL(k) SUF(dense_rows_small_n)(x, y, loss, g, nrows, k, gscale, rtol, invalid, lse)
    XT_SMALL_N(XT_CALL)
#undef XT_CALL
    SUF(dense_rows_small_n)(x, y, loss, g, nrows, n, gscale, rtol, invalid, lse);
}

/* labels[i] < 0 marks an ignored row: loss 0 and a zero gradient row.  With
 * class weights w (or NULL) and label smoothing eps, PyTorch's cross_entropy
 * (see class_row for the formulas); the gradient is scaled by gscale. */
static inline __attribute__((always_inline)) void SUF(sparse_rows_small_n)(
        const T *x, const int64_t *labels, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n, T gscale, T *lse,
        const T *w, T eps) {
    VIT rowidx[SMALL_N];
    VT col[SMALL_N];          /* column of each element, as T (compared as T) */
    VT wk[SMALL_N];           /* the class weight of each element */
    T W = 0;
    for (ptrdiff_t j = 0; j < n; j++) W += w ? w[j] : 1;
    for (ptrdiff_t k = 0; k < n; k++)
        for (int i = 0; i < NL; i++) {
            ptrdiff_t c = (k * NL + i) % n;
            rowidx[k][i] = (k * NL + i) / n;
            col[k][i] = (T)c;
            wk[k][i] = w ? w[c] : 1;
        }
    T keep1 = 1 - eps, B = eps / (T)n;
    VT nan = SUF(splat)((T)NAN), zero = SUF(splat)(0);
    VIT rowoff = SUF(row_offsets)(n);
    int cols_out = XT_COLS_OUT && g && SUF(transposable)(n);
    SUF(pend) Bq = {.k = 0};
    for (ptrdiff_t r0 = 0; r0 < nrows; r0 += NL) {
        ptrdiff_t nr = nrows - r0 < NL ? nrows - r0 : NL;
        const T *xb = x + r0 * n;
        /* keep: 1 for a counted row, 0 for an ignored one (label < 0); wy: w[label] */
        VIT kept_i, li;   /* -1 for a label >= 0; the label there, 0 elsewhere (in [0, n)) */
#if ISA_KIND == 2 && TBYTES == 4
        if (nr == NL) {
            VIT hi;
            SUF(split_labels)(labels + r0, &li, &hi);
            kept_i = ~(hi >> 31);
            li &= kept_i;
        } else
#endif
        {
            SUF(v64) l64 = {0};   /* the group's nr labels; the lanes past them read 0 */
            if (nr == NL)   /* one vector load (a copy of variable length was a loop of */
                __builtin_memcpy(&l64, labels + r0, sizeof l64);   /* 8-byte stores, then a */
            else                                                   /* stalled wide load) */
                __builtin_memcpy(&l64, labels + r0, (size_t)nr * 8);
            kept_i = __builtin_convertvector(l64 >= 0, VIT);
            li = __builtin_convertvector(l64, VIT) & kept_i;
        }
        VT lab = SUF(count_to_T)(li), one = SUF(splat)(1);   /* li in [0, n) */
        VT keep = SUF(sel)(kept_i, one, zero);
        VIT labpos = rowoff + li;
        VT wy = w ? SUF(gather)(w, li, NL, 0) : one;
        SUF(lanes) L;
        VT cols[SMALL_N];
        SUF(lane_stats)(xb, NULL, eps > 0 ? (w ? w : NULL) : NULL, nr, n, &L, cols, NULL, cols_out);
        if (eps > 0 && !w) {          /* unweighted smoothing: sum_j z_j over the row */
            L.swz = zero;
            for (ptrdiff_t j = 0; j < n; j++) {
                VT v = SUF(gather)(xb + j, rowoff, nr, 0);
                L.swz += SUF(sel)(v == L.m, zero, v - L.m);
            }
        }
        VT xl = SUF(gather)(xb, labpos, nr, 0);
        VT zl = SUF(sel)(xl == L.m, zero, xl - L.m);
        /* loss = c1 (log1p(s) - z_y) + B (log1p(s) W - swz), c1 = (1 - eps) w_y:
         * P log1p(s) + Q, both terms >= 0 */
        VT c1 = keep1 * wy;   /* 0 * log 0 = 0, as in class_row */
        VT P = c1, Q = SUF(sel)(c1 != zero, -(c1 * zl), zero);
        if (eps > 0) {
            P += B * W;
            Q -= B * L.swz;
        }
        VIT kept = keep != zero;   /* ignored rows are 0 even with NaN logits */
        Q = SUF(sel)(kept, SUF(sel)(L.undefined, nan, Q), zero);
        P = SUF(sel)(kept, P, zero);
        SUF(pend_add)(&Bq, r0, &L, P, Q, loss, lse, nrows);
        if (!g) continue;
        VT inv = 1 / (1 + L.s), A = keep1 * wy + B * W;
        VT ca = A * inv * gscale;
        /* the label's entry: (B W - (1 - eps) w_y s) / (1 + s) when it ties the max
         * (-s / (1 + s) without weights and smoothing), else A p_y - (1 - eps) w_y */
        VT glab = SUF(sel)(xl == L.m, (B * W - keep1 * wy * L.s) * inv,
                           A * SUF(exp_neg)(zl) * inv - keep1 * wy) - B * wy;
        glab *= gscale;
        T *gb = g + r0 * n;
#if XT_COLS_OUT
        if (cols_out) {   /* column j from its kept exp, as below */
            _Pragma("GCC unroll 16")
            for (ptrdiff_t j = 0; j < n; j++) {
                VT gv = (cols[j] * (T)SUMSCALE_INV) * ca;
                if (eps > 0) gv -= (B * gscale) * (w ? w[j] : 1);
                gv = SUF(sel)(lab == SUF(splat)((T)j), glab, gv);
                gv = SUF(sel)(L.undefined, nan, gv);
                cols[j] = SUF(sel)(kept, gv, zero);
            }
            SUF(store_cols)(gb, n, nr, cols);
            continue;
        }
#endif
        ptrdiff_t total = nr * n;
        for (ptrdiff_t k = 0; k * NL < total; k++) {
            ptrdiff_t r = total - k * NL;
            VT v = r >= NL ? SUF(load)(xb + k * NL) : SUF(load_part)(xb + k * NL, r, 0);
            VT m = SUF(permute)(L.m, rowidx[k]);
            VT e = SUF(exp_neg)(SUF(sel)(v == m, zero, v - m));
            VT gv = e * SUF(permute)(ca, rowidx[k]);
            if (eps > 0) gv -= (B * gscale) * wk[k];
            VIT is_label = col[k] == SUF(permute)(lab, rowidx[k]);
            gv = SUF(sel)(is_label, SUF(permute)(glab, rowidx[k]), gv);
            gv = SUF(sel)((VIT)SUF(permute)((VT)L.undefined, rowidx[k]), nan, gv);
            gv = SUF(sel)(SUF(permute)(keep, rowidx[k]) != zero, gv, zero);
            if (r >= NL) SUF(store)(gb + k * NL, gv); else SUF(store_part)(gb + k * NL, gv, r);
        }
    }
    SUF(pend_flush)(&Bq, loss, lse, nrows);
}

static void SUF(sparse_rows_small)(const T *x, const int64_t *labels, T *loss, T *g,
                                   ptrdiff_t nrows, ptrdiff_t n, T gscale, T *lse, const T *w, T eps) {
    /* The plain loss (no lse, weights or smoothing) again with those
     * constants and g NULL, as in dense_rows_small (AVX-512: float32 0.52 ->
     * 0.46 ns/logit, float64 0.90 -> 0.86; AVX2 0.60 -> 0.56 and 1.49 ->
     * 1.45), and on AVX-512 the plain loss+grad too (0.86 -> 0.76 and 1.52
     * -> 1.49; on AVX2 it was 3-6% slower). */
    if (!lse && !w && eps == 0) {
        if (!g) {
#define XT_CALL(k) SUF(sparse_rows_small_n)(x, labels, loss, NULL, nrows, k, 1, NULL, NULL, 0)
            XT_SMALL_N(XT_CALL)
#undef XT_CALL
        }
#if ISA_KIND == 3
        else {
#define XT_CALL(k) SUF(sparse_rows_small_n)(x, labels, loss, g, nrows, k, gscale, NULL, NULL, 0)
            XT_SMALL_N(XT_CALL)
#undef XT_CALL
        }
#endif
    }
#define XT_CALL(k) SUF(sparse_rows_small_n)(x, labels, loss, g, nrows, k, gscale, lse, w, eps)
    XT_SMALL_N(XT_CALL)
#undef XT_CALL
    SUF(sparse_rows_small_n)(x, labels, loss, g, nrows, n, gscale, lse, w, eps);
}

/* ---- class-index targets with weights, smoothing, ignored rows ---------- */

/* PyTorch's cross_entropy for one row with class index `label` (>= 0):
 *   loss = (1 - eps) w_y (lse - x_y) + (eps / n) sum_c w_c (lse - x_c)
 * (w = 1 without weights; sum_c w_c (lse - x_c) = log1p(s) W - sum_c w_c z_c,
 * both terms >= 0), and the gradient of gscale * loss:
 *   g_c = gscale (A p_c - B w_c) - gscale (1 - eps) w_y [c == y],
 *   A = (1 - eps) w_y + B W, B = eps / n, W = sum_c w_c;
 * at a label that ties the max, A p_y - (1 - eps) w_y = (B W - (1 - eps) w_y s) / (1 + s)
 * keeps the tiny value.  w must be given (ones) when eps > 0. */
static T SUF(class_row)(const T *x, ptrdiff_t label, T *g, ptrdiff_t n, const T *w, double eps,
                        double gscale, const double *wblk) {
    SUF(acc) a;
    SUF(lab) Lw = {NULL, w, 1, 0, wblk};
    T xl = x[label];
    if (!SUF(row_stats)(x, eps > 0 ? &Lw : NULL, n, &a)) {
        if (g) SUF(fill)(g, n, (T)NAN);
        return (T)NAN;
    }
    double s = SUF(row_s)(&a), lse = log1p(s), B = eps / (double)n;
    double zl = xl == a.m ? 0.0 : (double)xl - (double)a.m;
    double wy = w ? (double)w[label] : 1.0, W = eps > 0 ? a.sy : 0.0;
    /* 0 * log 0 = 0: a label term of weight (1 - eps) w_y = 0 adds nothing, also
     * when lse - z_y is +inf (a -inf label logit, or a +inf elsewhere) */
    double c1 = (1 - eps) * wy;
    double loss = c1 != 0 ? c1 * (lse - zl) : 0.0;
    if (eps > 0) loss += B * (lse * W - a.yz);
    if (g) {
        double inv = 1.0 / (1.0 + s), A = (1 - eps) * wy + B * W;
        T ca = (T)(gscale * A * inv), cb = (T)(gscale * B);
        if (a.m == TINF) {
            for (ptrdiff_t j = 0; j < n; j++)
                g[j] = ca * SUF(e_inf)(x[j]) - (w ? cb * w[j] : cb);
        } else {
            VT vm = SUF(splat)(a.m), va = SUF(splat)(ca), vb = SUF(splat)(cb);
            for (ptrdiff_t j = 0; j < n; j += NL) {
                ptrdiff_t r = n - j;
                VT v = r >= NL ? SUF(load)(x + j) : SUF(load_part)(x + j, r, -TINF);
                VT gv = SUF(exp_neg)(v - vm) * va;
                if (eps > 0)
                    gv -= vb * (r >= NL ? SUF(load)(w + j) : SUF(load_part)(w + j, r, 0));
                if (r >= NL) SUF(store)(g + j, gv); else SUF(store_part)(g + j, gv, r);
            }
        }
        double head = xl == a.m ? (B * W - (1 - eps) * wy * s) * inv
                                : A * exp(zl) * inv - (1 - eps) * wy;
        g[label] = (T)(gscale * (head - B * wy));
    }
    return (T)loss;
}

/* rows with labels[i] < 0 are ignored: loss 0, zero gradient */
static void SUF(class_rows)(const T *x, const int64_t *labels, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n,
                            const T *w, double eps, double gscale) {
    if (n <= SMALL_N) {
        SUF(sparse_rows_small)(x, labels, loss, g, nrows, n, (T)gscale, NULL, w, (T)eps);
        return;
    }
    double *wblk = NULL;   /* the weights' block sums, once for all rows of the chunk */
    if (eps > 0 && w && (wblk = (double *)malloc(sizeof(double) * 3 * (size_t)(n / BLOCK + 1))))
        SUF(weight_blocks)(w, n, wblk);
    for (ptrdiff_t i = 0; i < nrows; i++) {
        if (labels[i] < 0) {
            loss[i] = 0;
            if (g) SUF(fill)(g + i * n, n, 0);
            continue;
        }
        loss[i] = SUF(class_row)(x + i * n, (ptrdiff_t)labels[i], g ? g + i * n : NULL, n, w, eps,
                                 gscale, wblk);
    }
    free(wblk);
}

/* probability targets t with weights w (ones when eps > 0 and no weights) and
 * smoothing eps: the dense kernel with labels w_c ((1 - eps) t_c + eps / n),
 * gradient scaled by gscale */
static void SUF(prob_rows)(const T *x, const T *t, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n,
                           const T *w, double eps, double gscale) {
    if (n <= SMALL_N && !w) {
        SUF(dense_rows_small)(x, t, loss, g, nrows, n, (T)gscale, 0, NULL, NULL);
        return;
    }
    for (ptrdiff_t i = 0; i < nrows; i++) {
        SUF(lab) L = {t + i * n, w, (T)(1 - eps), (T)(eps / (double)n), NULL};
        loss[i] = SUF(dense_row)(x + i * n, &L, g ? g + i * n : NULL, n, (T)gscale, 0, NULL, NULL, NULL, NULL, 0);
    }
}

/* ---- entry points over a range of rows ---------------------------------- */

/* invalid (or NULL): per row, 1 when the labels are not a distribution (rtol) */
/* lse (or NULL): per row, the log-sum-exp of the logits.  mask (or NULL): the
 * classes included, row i at mask + i * mstride (mstride 0: one row for all) */
/* Streaming a separate gradient (stream != 0: the caller's gradient is too
 * large to stay in the cache, see STREAM_BYTES in _kernels.pyx): the terms
 * the statistics pass keeps go to a scratch row, which stays in the cache, and
 * the output pass writes the gradient once, with streaming stores.  Written in
 * place or through the cache, each line of g is first read from memory (to
 * own it), then written: a third more traffic than a dense loss+grad needs,
 * half more than a sparse one.  Off in place (g == x: the lines were just
 * read), with a mask and for few classes; without the scratch (no memory) the terms go to g. */
static T *SUF(stream_scratch)(const T *x, const T *g, ptrdiff_t n, const uint8_t *mask, int *stream,
                              void **raw) {
    *raw = NULL;
    *stream = *stream && g && g != x && !mask && n > SMALL_N;
    if (!*stream || n > STORE_N || !(*raw = malloc((size_t)n * sizeof(T) + 64))) return NULL;
    return (T *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

static void SUF(dense_rows)(const T *x, const T *y, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n,
                            double rtol, int8_t *invalid, T *lse, const uint8_t *mask, ptrdiff_t mstride,
                            int stream) {
    if (n <= SMALL_N && !mask) {
        SUF(dense_rows_small)(x, y, loss, g, nrows, n, 1, rtol, invalid, lse);
        return;
    }
    void *raw;
    T *scr = SUF(stream_scratch)(x, g, n, mask, &stream, &raw);
    for (ptrdiff_t i = 0; i < nrows; i++) {
        SUF(lab) L = {y + i * n, NULL, 1, 0, NULL};
        loss[i] = SUF(dense_row)(x + i * n, &L, g ? g + i * n : NULL, n, 1, rtol,
                                 invalid ? invalid + i : NULL, lse ? lse + i : NULL,
                                 mask ? mask + i * mstride : NULL, scr, stream);
    }
    if (stream) SUF(stream_fence)();
    free(raw);
}

static void SUF(sparse_rows)(const T *x, const int64_t *labels, T *loss, T *g, ptrdiff_t nrows, ptrdiff_t n,
                             T *lse, const uint8_t *mask, ptrdiff_t mstride, int stream) {
    if (n <= SMALL_N && !mask) {
        SUF(sparse_rows_small)(x, labels, loss, g, nrows, n, 1, lse, NULL, 0);
        return;
    }
    void *raw;
    T *scr = SUF(stream_scratch)(x, g, n, mask, &stream, &raw);
    for (ptrdiff_t i = 0; i < nrows; i++)
        loss[i] = SUF(sparse_row)(x + i * n, (ptrdiff_t)labels[i], g ? g + i * n : NULL, n,
                                  lse ? lse + i : NULL, mask ? mask + i * mstride : NULL, scr, stream);
    if (stream) SUF(stream_fence)();
    free(raw);
}

/* the softmax family over rows, with an optional mask as above */
static void SUF(softmax_rows)(const T *x, T *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                              ptrdiff_t mstride) {
    for (ptrdiff_t i = 0; i < nrows; i++)
        SUF(softmax_row)(x + i * n, p + i * n, n, mask ? mask + i * mstride : NULL);
}

static void SUF(log_softmax_rows)(const T *x, T *p, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                                  ptrdiff_t mstride) {
    for (ptrdiff_t i = 0; i < nrows; i++)
        SUF(log_softmax_row)(x + i * n, p + i * n, n, mask ? mask + i * mstride : NULL);
}

static void SUF(logsumexp_rows)(const T *x, T *out, ptrdiff_t nrows, ptrdiff_t n, const uint8_t *mask,
                                ptrdiff_t mstride) {
    for (ptrdiff_t i = 0; i < nrows; i++)
        out[i] = SUF(logsumexp_row)(x + i * n, n, mask ? mask + i * mstride : NULL);
}

static void SUF(check_labels)(const T *y, int8_t *invalid, ptrdiff_t nrows, ptrdiff_t n, double rtol) {
    if (n > SMALL_N) {
        for (ptrdiff_t i = 0; i < nrows; i++) invalid[i] = (int8_t)SUF(labels_invalid)(y + i * n, n, rtol);
        return;
    }
    VIT rowoff = SUF(row_offsets)(n);   /* few classes: one row per lane, as in lane_stats */
    for (ptrdiff_t r0 = 0; r0 < nrows; r0 += NL) {
        ptrdiff_t nr = nrows - r0 < NL ? nrows - r0 : NL;
        VT sy = SUF(splat)(0), ymin = sy;
        for (ptrdiff_t j = 0; j < n; j++) {
            VT w = SUF(gather)(y + r0 * n + j, rowoff, nr, 0);
            sy += w;
            ymin = SUF(vmin)(w, ymin);
        }
        SUF(lanes_invalid)(invalid + r0, ymin, sy, nr, rtol);
    }
}
