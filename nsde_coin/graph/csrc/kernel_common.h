/* What every compiled kernel of the package shares: exported entry points, named per instruction set.
 *
 * panel_kernel.c and csr_power.c are compiled three times into one library, by kernels_avx512.c, kernels_avx2.c and
 * kernels_baseline.c: each defines NSDE_ISA_SUFFIX (_avx512, _avx2, _baseline) and, with GCC on x86-64, the target
 * of the code, then includes both files.  ENTRY(name) appends the suffix, so the library exports e.g.
 * nsde_csr_power_avx512, nsde_csr_power_avx2 and nsde_csr_power_baseline; nsde_coin/graph/native.py calls the set
 * for the CPU it runs on (module.c's nsde_kernel_best_isa) or the one NSDE_COIN_NATIVE_ISA names, so the baseline
 * and AVX2 code can be tested on an AVX-512 machine. */
#ifndef NSDE_KERNEL_COMMON_H
#define NSDE_KERNEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifndef NSDE_ISA_SUFFIX
#define NSDE_ISA_SUFFIX /* a file compiled on its own: plain names */
#endif
#define NSDE_CAT2(a, b) a##b
#define NSDE_CAT(a, b) NSDE_CAT2(a, b)
#define ENTRY(name) NSDE_CAT(name, NSDE_ISA_SUFFIX)

/* the library is built with -fvisibility=hidden: only entry points are exported */
#define API __attribute__((visibility("default")))

/* Threads of one kernel call at most (the callers cap their count; module.c runs them). */
#define NSDE_MAX_THREADS 64

/* fn(jobs + t·size) for t in [0, count), concurrently; returns when all have finished (module.c).  With OpenMP: on
 * the process's OpenMP pool; without: t >= 1 each on a new POSIX thread, t = 0 on the calling one, and a thread
 * that cannot be started runs its job on the calling thread instead (same result). */
void nsde_run_jobs(void *(*fn)(void *), void *jobs, size_t size, int64_t count);

#endif
