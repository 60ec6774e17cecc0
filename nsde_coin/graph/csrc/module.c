/* The library's own entry points (one copy, not per instruction set) and an importable, empty Python module, so
 * that tools walking the package (docs, pkgutil) can import the file; the kernels are called through ctypes by
 * nsde_coin/graph/native.py. */
#include <pthread.h>
#include <stdint.h>

#include "kernel_common.h"

/* Bumped whenever an entry point's name, arguments or scratch sizes change (10: the read-out head's row check;
 * 9: the residual branch inside the base layer's calls, the read-out head of readout_head.c, nsde_adam); nsde_coin/graph/native.py refuses a build of another version (a stale .so left by an editable
 * install after a pull) instead of passing it mismatched arguments. */
API int64_t nsde_panel_abi_version(void) { return 10; }

/* The widest kernel build this CPU runs: 2 = _avx512 (x86-64-v4), 1 = _avx2 (x86-64-v3), 0 = _baseline.  Where the
 * builds are not specialised (another compiler or architecture: all three are the same generic code) it is 0. */
API int64_t nsde_kernel_best_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
#if __GNUC__ >= 12
    if (__builtin_cpu_supports("x86-64-v4")) return 2;
    if (__builtin_cpu_supports("x86-64-v3")) return 1;
#else
    const int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (v3) return 1;
#endif
#endif
    return 0;
}

#ifdef _OPENMP
/* Built with OpenMP: the jobs run on the OpenMP pool of the process.  Loaded after torch, the library binds to the
 * libgomp.so.1 torch already loaded, so the kernel shares torch's threads: separate POSIX threads competed with
 * torch's idle OpenMP workers, which spin for milliseconds after each parallel op (2-thread Cora epoch: slower
 * than one thread). */
void nsde_run_jobs(void *(*fn)(void *), void *jobs, size_t size, int64_t count) {
    char *job = jobs;
    if (count > NSDE_MAX_THREADS) count = NSDE_MAX_THREADS;
    if (count <= 1) {
        fn(job);
        return;
    }
#pragma omp parallel for num_threads(count) schedule(static, 1)
    for (int64_t t = 0; t < count; t++) fn(job + t * size);
}
#else
void nsde_run_jobs(void *(*fn)(void *), void *jobs, size_t size, int64_t count) {
    pthread_t tid[NSDE_MAX_THREADS];
    int started[NSDE_MAX_THREADS] = {0};
    char *job = jobs;
    if (count > NSDE_MAX_THREADS) count = NSDE_MAX_THREADS;
    for (int64_t t = 1; t < count; t++) started[t] = pthread_create(&tid[t], NULL, fn, job + t * size) == 0;
    fn(job);
    for (int64_t t = 1; t < count; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(job + t * size);
    }
}
#endif

#ifdef NSDE_PYTHON_MODULE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef panel_kernel_module = {
    PyModuleDef_HEAD_INIT, "_panel_kernel",
    "Compiled kernels of COIN (base layer, explicit diffusion); called through ctypes by nsde_coin.graph.native.", -1,
    NULL, NULL, NULL, NULL, NULL};
API PyMODINIT_FUNC PyInit__panel_kernel(void) { return PyModule_Create(&panel_kernel_module); }
#endif
