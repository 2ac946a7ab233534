// Threads per rank and the CPU's peak FLOP/s.
#include "loom/train/resources.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <fstream>
#include <string>

namespace loom::train {

int threads_per_rank(const char* slurm_cpus_per_task, const char* ompi_local_size, int cores) {
  if (slurm_cpus_per_task && std::atoi(slurm_cpus_per_task) > 0) return std::atoi(slurm_cpus_per_task);
  const int local = ompi_local_size ? std::max(1, std::atoi(ompi_local_size)) : 1;
  return std::max(1, cores / local);
}

int threads_per_rank() {
  return threads_per_rank(std::getenv("SLURM_CPUS_PER_TASK"), std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE"), omp_get_num_procs());
}

namespace {

// Floats per FMA instruction of the widest kind this CPU runs. OpenBLAS, which does most of the
// FLOPs, picks its kernels for the CPU at run time (AVX-512 ones where there is AVX-512), so
// this is the CPU's width, not that of the ISA Loom's own kernels are compiled for.
int fma_width() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 16;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
  return 4;  // SSE: a multiply and an add per cycle counted as one 4-wide FMA
#else
  return 4;
#endif
}

double clock_ghz() {
  std::ifstream max_freq("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");  // kHz
  double khz = 0;
  if (max_freq >> khz && khz > 0) return khz / 1e6;
  std::ifstream cpuinfo("/proc/cpuinfo");
  double mhz = 0;
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("cpu MHz", 0) == 0 && line.find(':') != std::string::npos) mhz = std::max(mhz, std::atof(line.c_str() + line.find(':') + 1));
  return mhz > 0 ? mhz / 1e3 : 2.0;  // unknown: assume 2 GHz (and say so)
}

}  // namespace

PeakFlops cpu_peak_flops(int threads) {
  const int width = fma_width();
  const double ghz = clock_ghz();
  const double flops = double(threads) * width * 2 * 2 * ghz * 1e9;
  return {flops, fmt::format("{} threads × {}-wide FMA × 2 units × 2 FLOPs × {:.2f} GHz = {:.0f} GFLOP/s", threads, width, ghz, flops / 1e9)};
}

}  // namespace loom::train
