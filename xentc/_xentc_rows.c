/* The row kernels of xentc, compiled for several ISAs in one file and picked
 * at import from CPUID (no -march flag: the wheel runs on any CPU of its
 * architecture).
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
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_xentc_rows.h"
#if defined(__x86_64__) || defined(_M_X64)
#define XENTC_X86 1
#include <immintrin.h>
#endif

#if !(defined(__GNUC__) || defined(__clang__))
#error "xentc's kernels need GCC or Clang vector extensions (use clang-cl on Windows)"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define ISA_NAME_baseline "baseline"
#define ISA_NAME_avx2 "avx2"
#define ISA_NAME_avx512 "avx512"

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

#ifdef XENTC_X86

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define ISA avx2
#define VBYTES 32
#define ISA_KIND 2
#include "_xentc_isa.h"
#undef ISA
#undef VBYTES
#undef ISA_KIND
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
#endif
#define ISA avx512
#define VBYTES 64
#define ISA_KIND 3
#include "_xentc_isa.h"
#undef ISA
#undef VBYTES
#undef ISA_KIND
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* x86-64 */

const xentc_rows_table *xentc_rows = &table_baseline;

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
    if (strcmp(isa, "avx2") == 0) return &table_avx2;
    if (strcmp(isa, "avx512") == 0) return &table_avx512;
#endif
    return &table_baseline;
}

int xentc_select_isa(const char *request) {
    if (request == NULL || strcmp(request, "auto") == 0) {
        xentc_rows = cpu_has("avx512") ? table_of("avx512")
                   : cpu_has("avx2") ? table_of("avx2") : &table_baseline;
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
