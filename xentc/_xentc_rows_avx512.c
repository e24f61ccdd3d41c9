/* The AVX-512 path of the row kernels (see _xentc_rows.c), a translation unit
 * of its own so that it compiles in parallel with the others. */
#include "_xentc_rows_tu.h"

#ifdef XENTC_X86

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

#else
typedef int xentc_rows_avx512_is_x86_only;   /* ISO C wants a declaration */
#endif /* x86-64 */
