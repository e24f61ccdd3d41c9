/* Vectorisable exp for float and double, of our own (no libmvec: it is not
 * in macOS/Windows/musl wheels, and -ffast-math would break inf/NaN).
 *
 * Included once per ISA with VF/VIF/VUF (float vector, int32 and uint32
 * vectors of the same width), VD/VID/VUD (double vector, int64 and uint64
 * vectors) and ISUF(name) defined.
 *
 * exp(x) = 2^n * exp(r): n = round(x / ln 2) by the 1.5 * 2^(mantissa bits)
 * trick, r = x - n ln 2 with ln 2 split in a high part (exact products n *
 * ln2_hi) and a low part (Cody-Waite), |r| <= ln(2)/2; exp(r) = 1 + r + r^2 P(r)
 * with P fitted for minimal relative error (Lawson-weighted least squares on
 * Chebyshev nodes in mpmath: 3.1e-9 for float's degree 6, 3.6e-18 for
 * double's degree 11).  In vexpf_core and vexpd_core 2^n is applied by
 * AVX-512's scalef, elsewhere as 2^(n >> 1) * 2^(n - (n >> 1)), two normal
 * powers of two; either way results in the denormal range get one rounding
 * (vexpf_sum and vexpd_sum, for sums, scale by 2^64 instead).
 * Inputs beyond the finite range give 0 or +inf; NaN propagates; exp(0) = 1
 * exactly.  Checked against the correctly rounded result: float at most
 * 1.02 ulp over all 2^32 inputs; double at most 1.05 ulp on 4e7 random
 * inputs (tests/test_exp.py re-checks both through xentc._kernels).
 */

/* The reduction and polynomial both float exps share: t = x log2(e) + magic
 * (n = t - magic, rounded to an integer by magic = 1.5 * 2^23 + bias), r = x -
 * n ln 2 and P(r), exp(r) = 1 + r + r^2 P(r). */
static inline VF ISUF(vexpf_poly)(VF x, float magic, VF *t, VF *r) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723212e-6f;
    *t = x * log2e + magic;
    VF n = *t - magic;
    *r = x - n * ln2_hi;
    *r = *r - n * ln2_lo;
    VF p = *r * 0.0013814604481163213329f + 0.0083687106547354557303f;
    p = p * *r + 0.041668387544599539445f;
    p = p * *r + 0.16666520680903701202f;
    return p * *r + 0.49999993450796762013f;
}

/* exp for x in [-104, 104]: no range checks (the kernels clamp z <= 0 at -104) */
static inline VF ISUF(vexpf_core)(VF x) {
    const float magic = 12582912.0f;   /* 1.5 * 2^23 */
    VF t, r, p = ISUF(vexpf_poly)(x, magic, &t, &r);
    p = p * (r * r) + r + 1.0f;
#if ISA_KIND == 3
    return (VF)_mm512_scalef_ps((__m512)p, (__m512)(t - magic));   /* p 2^n, denormals rounded once */
#else
    /* n as an integer: bits of t - bits of magic, in unsigned lanes (lanes
     * outside the range wrap, and are masked off by the callers) */
    VUF q = (VUF)t - 0x4b400000u;
    VUF q1 = (VUF)((VIF)q >> 1), q2 = q - q1;           /* floor(n / 2) and the rest */
    return p * (VF)((q1 + 127u) << 23) * (VF)((q2 + 127u) << 23);
#endif
}

/* exp(x) 2^64 for x in [-132.5, 0], for sums of many terms only (the row's
 * sum of exp(x - max); the caller clamps x at -132.5, see exp_neg_sum):
 * vexpf_core's reduction and polynomial, the polynomial in Horner form
 * 1 + r (1 + r P(r)), which saves a multiply and an add.  The factor 2^64
 * keeps the terms normal down to x = -131.70 (exp(x) 2^64 = 2^-126; a few below
 * are denormal), so 2^(n + 64) is one power of two (normal down to n = -190),
 * made in one operation from t: the rounding constant carries the exponent
 * bias, n + 64 + 127 (0 to 191 here) sits in the low bits of t, and one shift
 * makes the float; one multiply applies it.  Where n = -191 (x <= -132.05,
 * the clamp included, so -inf too) those bits are 0 and the term is exactly 0.
 * The caller takes the 2^64 out of the sum (exact: a power of two, rounded
 * once should the sum be denormal).  Within 2 ulp of exp(x) 2^64
 * (tests/test_exp.py checks every 61st float in [-132, 0]; over every 7th in
 * [-104, 0] the largest error measured was 0.87 ulp).
 * Rows short enough to keep these terms (STORE_N) also make their softmax
 * and gradients from them; the other output paths use vexpf_core.
 * On AVX-512, as vexpd_sum there: x = m ln 2 / 16 + r, m = round(16 x / ln
 * 2), |r| <= ln 2 / 32, k = m + 3064 in t's low bits, exp(x) 2^64 =
 * 2^((k >> 4) - 127) tab[k & 15] (1 + q(r)), tab[i] = 2^((i - 8) / 16)
 * correctly rounded (checked with mpmath), picked by one vpermps (it reads
 * the low 4 bits of t's lanes), q(r) = r + r^2 (1/2 + r/6) (Taylor: r^4 / 24
 * <= 9.2e-9, 0.08 ulp): 8 multiply-adds instead of 10 for a permute and a
 * shift; denormals where they are above, and zeros from x < -132.066 (k
 * >> 4 = 0; -132.05 above).  Error up to 1.06 ulp over every float in
 * [-132, 0] whose result is normal (0.88 for the polynomial; the table's
 * rounding adds).  C
 * harness, one Zen 4 core, float32 ns/logit: sparse loss 256 x 1000 (in
 * cache) 0.291 -> 0.261, 64 x 32000 0.241 -> 0.213, 32768 x 10 0.457 ->
 * 0.429, dense loss 256 x 1000 0.317 -> 0.294.  A second table of the
 * first's rounding errors (one more permute and add, error about 0.55 ulp)
 * took all of that back (256 x 1000 0.285, 32768 x 10 0.481).  AVX2 (8
 * lanes: a table of 8, a polynomial of one more degree) keeps the
 * polynomial. */
static inline VF ISUF(vexpf_sum)(VF x) {
#if ISA_KIND == 3
    static const float tab[16] = {
        0x1.6a09e6p-1f, 0x1.7a1148p-1f, 0x1.8ace54p-1f, 0x1.9c4918p-1f, 0x1.ae89fap-1f, 0x1.c199bep-1f,
        0x1.d5818ep-1f, 0x1.ea4afap-1f, 0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f,
        0x1.306fe0p+0f, 0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f};
    /* t = 1.5 * 2^23 + k, k = m + 3064 (191 * 16 + 8), from 0 to 3064 here; t - magic = m */
    const float magic = 12582912.0f + 3064.0f;
    VF t = x * 0x1.715476p+4f + magic;              /* 16 / ln 2 */
    VF m = t - magic;
    VF r = x - m * 0x1.62ep-5f;                     /* ln 2 / 16, high part: m times it is exact */
    r = r - m * 0x1.0bfbe8p-19f;                    /* and low part */
    VF p = r * 0.16666667f + 0.5f;
    VF q = (r * r) * p + r;
    VF tb = (VF)_mm512_permutexvar_ps((__m512i)t, _mm512_loadu_ps(tab));
    return (tb * q + tb) * (VF)(((VUF)t >> 4) << 23);
#else
    /* 1.5 * 2^23 + 191: t = 1.5 * 2^23 + (n + 191), n = round(x log2(e)) */
    VF t, r, p = ISUF(vexpf_poly)(x, 12583103.0f, &t, &r);
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* bits of 2^(n + 64) = (n + 191) << 23 (0 at n = -191): the shift drops
     * t's other bits (AVX-512 too: its scalef would make a denormal there) */
    return p * (VF)((VUF)t << 23);
#endif
}

/* exp over the whole float range: 0 below -104, +inf above 104, NaN kept */
static inline VF ISUF(vexpf)(VF x) {
    VF y = ISUF(vexpf_core)(x);
    VIF big = x > 104.0f, out = big | (x < -104.0f);
    return (VF)(((VIF)y & ~out) | (((VIF){0} + 0x7f800000) & big));
}

/* The reduction and polynomial both double exps share, as vexpf_poly */
static inline VD ISUF(vexpd_poly)(VD x, double magic, VD *t, VD *r) {
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
    *t = x * log2e + magic;
    VD n = *t - magic;
    *r = x - n * ln2_hi;
    *r = *r - n * ln2_lo;
    VD p = *r * 2.500008819528246880346209e-8 + 2.763023598483927365372681e-7;
    p = p * *r + 2.755758622757983919278012e-6;
    p = p * *r + 2.480149313001240384093791e-5;
    p = p * *r + 1.9841269506805341304067e-4;
    p = p * *r + 1.38888889436040770782053e-3;
    p = p * *r + 8.333333333494333220866605e-3;
    p = p * *r + 4.166666666653023999213995e-2;
    p = p * *r + 0.1666666666666641274555811;
    return p * *r + 0.5000000000000010619996999;
}

/* exp for x in [-746, 746]: no range checks (the kernels clamp z <= 0 at -746) */
static inline VD ISUF(vexpd_core)(VD x) {
    const double magic = 6755399441055744.0;   /* 1.5 * 2^52 */
    VD t, r, p = ISUF(vexpd_poly)(x, magic, &t, &r);
    p = p * (r * r) + r + 1.0;
#if ISA_KIND == 3
    return (VD)_mm512_scalef_pd((__m512d)p, (__m512d)(t - magic));
#else
    VUD q = (VUD)t - 0x4338000000000000ULL;           /* bits of t - bits of magic, unsigned */
    VUD q1 = (VUD)((VID)q >> 1), q2 = q - q1;
    return p * (VD)((q1 + 1023u) << 52) * (VD)((q2 + 1023u) << 52);
#endif
}

/* exp(x) 2^64 for x in [-753.5, 0], for sums of many terms only, as
 * vexpf_sum: vexpd_core's reduction and polynomial in Horner form, 2^(n + 64)
 * from one shift of t, whose rounding constant carries the bias 1023 + 64
 * (n + 1087 from 0 to 1087 here; 0, an exact 0 term, at n = -1087, that is
 * x <= -753.1, the caller's clamp at -753.5 and -inf included).  The terms
 * are normal numbers down to x = -752.76 (and denormal below): no two-step
 * scaling as in vexpd_core.
 * On AVX-512 the reduction is finer and the polynomial shorter, the same
 * bounds and zeros: x = m ln 2 / 16 + r with m = round(16 x / ln 2) and |r|
 * <= ln 2 / 32; t's low bits hold k = m + 17400, and exp(x) 2^64 = 2^((k >>
 * 4) - 1023) tab[k & 15] (1 + q(r)), where tab[i] = 2^((i - 8) / 16),
 * correctly rounded, is picked by one permute (vpermt2pd reads the low 4 bits
 * of t's lanes as the index) and q(r) = exp(r) - 1 = r + r^2 P(r), P of
 * degree 4 fitted as vexpd_poly's by scripts/fit_exp_table.py, which also
 * prints the table (relative error of 1 + q 1.2e-17; Taylor's of that degree
 * gave exps off by 4.8 ulp): 4 multiply-adds for the polynomial instead of
 * 9, for one permute, one multiply-add (tab + tab q, rounded once) and one
 * more shift.
 * k >> 4 is round(x log2(e)) + 1087 up to the rounding of 16 x / ln 2, so the
 * zeros and the denormal band are where they are above.  Error up to 1.1 ulp
 * from the table's rounding and the last multiply-add (tests/test_exp.py).
 * C harness, float64 sparse loss, min ns/logit of 3 runs each, alternated:
 * one core, 2048 x 1000 (in cache) 0.569-0.577 -> 0.495-0.528; two cores,
 * 16384 x 1000 0.296-0.319 -> 0.239-0.264, 65536 x 10 0.503-0.568 ->
 * 0.454-0.491 (its loss+grad 0.830-0.865 -> 0.803-0.825). */
static inline VD ISUF(vexpd_sum)(VD x) {
#if ISA_KIND == 3
    static const double tab[16] = {
        0x1.6a09e667f3bcdp-1, 0x1.7a11473eb0187p-1, 0x1.8ace5422aa0dbp-1, 0x1.9c49182a3f090p-1,
        0x1.ae89f995ad3adp-1, 0x1.c199bdd85529cp-1, 0x1.d5818dcfba487p-1, 0x1.ea4afa2a490dap-1,
        0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
        0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0};
    /* t = 1.5 * 2^52 + k, k = m + 17400 from 7 to 17400 here; t - magic = m */
    const double magic = 6755399441055744.0 + 17400.0;
    VD t = x * 0x1.71547652b82fep+4 + magic;       /* 16 / ln 2 */
    VD m = t - magic;
    VD r = x - m * 0x1.62e42fee00000p-5;          /* ln 2 / 16, high part: m times it is exact */
    r = r - m * 0x1.a39ef35793c76p-37;            /* and low part (vexpd_poly's, / 16) */
    VD p = r * 0x1.6c14c6e06c654p-10 + 0x1.11123aaebf7c1p-7;
    p = p * r + 0x1.55555558fcb4bp-5;
    p = p * r + 0x1.555555548f887p-3;
    p = p * r + 0x1.fffffffffffb9p-2;
    VD q = (r * r) * p + r;
    VD tb = (VD)_mm512_permutex2var_pd(_mm512_loadu_pd(tab), (__m512i)t, _mm512_loadu_pd(tab + 8));
    /* bits 4..14 of k are the exponent field: 0 (an exact 0 term) for k < 16 */
    return (tb * q + tb) * (VD)(((VUD)t >> 4) << 52);
#else
    /* 1.5 * 2^52 + 1087: t = 1.5 * 2^52 + (n + 1087), n = round(x log2(e)) */
    VD t, r, p = ISUF(vexpd_poly)(x, 6755399441056831.0, &t, &r);
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p * (VD)((VUD)t << 52);   /* bits of 2^(n + 64) = (n + 1087) << 52 */
#endif
}

/* exp over the whole double range: 0 below -746, +inf above 746, NaN kept */
static inline VD ISUF(vexpd)(VD x) {
    VD y = ISUF(vexpd_core)(x);
    VID big = x > 746.0, out = big | (x < -746.0);
    return (VD)(((VID)y & ~out) | (((VID){0} + 0x7ff0000000000000LL) & big));
}
