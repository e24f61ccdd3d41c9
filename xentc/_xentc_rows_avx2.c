/* The AVX2+FMA path of the row kernels (see _xentc_rows.c), a translation unit
 * of its own so that it compiles in parallel with the others. */
#include "_xentc_rows_tu.h"

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

#else
typedef int xentc_rows_avx2_is_x86_only;   /* ISO C wants a declaration */
#endif /* x86-64 */
