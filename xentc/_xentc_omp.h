/* OpenMP shim: what Cython cannot express without requiring omp.h.
 *
 * The extension is compiled with OpenMP when setup.py's probe finds it, and
 * serially otherwise (e.g. Apple clang without libomp).  Cython guards its own
 * prange pragmas with #ifdef _OPENMP; these helpers give the Python layer the
 * same view: whether OpenMP is compiled in, and the default team size, which
 * honours OMP_NUM_THREADS and omp_set_num_threads (threadpoolctl).
 */
#ifndef XENTC_OMP_H
#define XENTC_OMP_H

#ifdef _OPENMP
#include <omp.h>
#define XENTC_OPENMP 1
static int xentc_omp_max_threads(void) { return omp_get_max_threads(); }
#else
#define XENTC_OPENMP 0
static int xentc_omp_max_threads(void) { return 1; }
#endif

#endif /* XENTC_OMP_H */
