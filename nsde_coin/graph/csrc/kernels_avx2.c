/* The compiled kernels built for AVX2 and FMA (x86-64-v3); entry points end in _avx2 (see kernel_common.h). */
#include <stdint.h>
#include <string.h>

#define NSDE_ISA_SUFFIX _avx2
#define NSDE_VL 8 /* floats per vector register */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("arch=x86-64-v3")
#endif
#include "panel_kernel.c"
#include "csr_power.c"
#include "readout_head.c"
