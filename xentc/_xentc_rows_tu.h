/* What each translation unit of the row kernels starts with: _xentc_rows.c
 * (the baseline path and the dispatch), _xentc_rows_avx2.c and
 * _xentc_rows_avx512.c (one ISA each, so that a build compiles them in
 * parallel; see setup.py). */
#ifndef XENTC_ROWS_TU_H
#define XENTC_ROWS_TU_H
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

/* the table of each path (_xentc_isa.h defines them) */
extern const xentc_rows_table xentc_table_baseline;
#ifdef XENTC_X86
extern const xentc_rows_table xentc_table_avx2;
extern const xentc_rows_table xentc_table_avx512;
#endif

#endif
