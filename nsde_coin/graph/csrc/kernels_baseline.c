/* The compiled kernels built for the baseline x86-64 (SSE2) or the compiler's default target; entry points end in _baseline (see kernel_common.h). */
#include <stdint.h>
#include <string.h>

#define NSDE_ISA_SUFFIX _baseline
#define NSDE_VL 4 /* floats per vector register */
#include "panel_kernel.c"
#include "csr_power.c"
#include "readout_head.c"
