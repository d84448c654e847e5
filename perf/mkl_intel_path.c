/* Make oneMKL (linked into torch's CPU wheel) take its Intel code paths on a non-Intel x86 CPU.
 *
 * MKL picks its GEMM kernels by CPU vendor: on an AMD EPYC it runs other kernels than on an Intel Xeon
 * with the same instruction sets, so a model trained on one rounds differently from one trained on the
 * other (ATEN_CPU_CAPABILITY does not reach MKL). Preloaded, this answers MKL's vendor check "Intel", so
 * one AMD machine can measure the noise an Intel CPU adds (leaderboards/README.md, "Tolerances"):
 *
 *   gcc -shared -fPIC -o runs/mkl_intel_path.so perf/mkl_intel_path.c
 *   LD_PRELOAD=$PWD/runs/mkl_intel_path.so harness noise ...
 *
 * Checked: the main command run so on an AMD EPYC gave the figures CI's Intel Xeon printed, every one.
 * Written by hand because no library switches MKL's dispatch (MKL_CBWR only narrows it on Intel CPUs).
 */
int mkl_serv_intel_cpu_true(void) { return 1; }
