/* The row kernels of xentc, compiled for several ISAs and picked at import
 * from CPUID (no -march flag: the wheel runs on any CPU of its architecture).
 * This file holds the baseline path and the dispatch; _xentc_rows_avx2.c and
 * _xentc_rows_avx512.c hold the others, one translation unit each so that
 * setup.py compiles them in parallel.
 *
 *   baseline  16-byte vectors: SSE2 on x86-64, NEON on arm64 (always there)
 *   avx2      32-byte vectors with FMA          (x86-64, GCC/Clang)
 *   avx512    64-byte vectors, AVX-512F/DQ      (x86-64, GCC/Clang)
 *
 * Each path is the same source (_xentc_rows_impl.h over GCC/Clang vector
 * extensions) compiled under a target pragma, so the paths differ only in
 * vector width and instructions, and every accuracy test runs on each
 * (XENTC_ISA=baseline|avx2|avx512 forces one).
 */
#include "_xentc_rows_tu.h"

#define ISA baseline
#define VBYTES 16
#ifdef XENTC_X86
#define ISA_KIND 1
#else
#define ISA_KIND 0
#endif
#include "_xentc_isa.h"
#undef ISA
#undef VBYTES
#undef ISA_KIND

const xentc_rows_table *xentc_rows = &xentc_table_baseline;

static int cpu_has(const char *isa) {
    if (strcmp(isa, "baseline") == 0) return 1;
#ifdef XENTC_X86
    __builtin_cpu_init();
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

static const xentc_rows_table *table_of(const char *isa) {
#ifdef XENTC_X86
    if (strcmp(isa, "avx2") == 0) return &xentc_table_avx2;
    if (strcmp(isa, "avx512") == 0) return &xentc_table_avx512;
#endif
    return &xentc_table_baseline;
}

int xentc_select_isa(const char *request) {
    if (request == NULL || strcmp(request, "auto") == 0) {
        xentc_rows = cpu_has("avx512") ? table_of("avx512")
                   : cpu_has("avx2") ? table_of("avx2") : &xentc_table_baseline;
        return 0;
    }
    if (!cpu_has(request)) return -1;
    xentc_rows = table_of(request);
    return 0;
}

const char *xentc_available_isas(void) {
    if (cpu_has("avx512")) return "baseline,avx2,avx512";
    if (cpu_has("avx2")) return "baseline,avx2";
    return "baseline";
}
