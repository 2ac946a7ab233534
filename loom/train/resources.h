// What one rank may use and what it could compute: threads per rank from the launcher's
// environment, and the fp32 peak FLOP/s that MFU is measured against.
#pragma once

#include <string>

namespace loom::train {

// OpenMP threads for one rank: Slurm's SLURM_CPUS_PER_TASK when set, else the cores of the node
// shared out among OpenMPI's local ranks (OMPI_COMM_WORLD_LOCAL_SIZE), else every core.
int threads_per_rank();
// The same from explicit values (null where a variable is unset), for tests.
int threads_per_rank(const char* slurm_cpus_per_task, const char* ompi_local_size, int cores);

struct PeakFlops {
  double flops = 0;   // fp32 FLOP/s
  std::string how;    // the derivation, for the log
};
// threads × vector width × 2 FMA units × 2 FLOPs × clock: the hardware's peak. The vector width
// is that of the widest FMA the CPU runs (16 floats with AVX-512, 8 with AVX2), which OpenBLAS
// uses at run time whatever ISA Loom's own kernels are compiled for. The clock is cpufreq's
// maximum, else /proc/cpuinfo's "cpu MHz". Two FMA units per core is an assumption (true of
// recent x86 server cores); logging.peak_flops overrides all of it.
PeakFlops cpu_peak_flops(int threads);

}  // namespace loom::train
