/* What every compiled kernel of the package shares: how entry points are exported and cloned per instruction set. */
#ifndef NSDE_KERNEL_COMMON_H
#define NSDE_KERNEL_COMMON_H

/* On x86-64 with GCC each entry point is cloned for AVX-512, AVX2 and baseline SSE2, and the clone for the CPU it
 * runs on is picked at load time (one binary for every machine). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* the library is built with -fvisibility=hidden: only entry points are exported */
#define API __attribute__((visibility("default")))

#endif
