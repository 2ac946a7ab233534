// dist::init / finalize / abort_on_error: the only code that starts or stops MPI.
#include "loom/dist/world.h"

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "loom/dist/local_group.h"
#include "loom/dist/mpi_group.h"
#include "loom/dist/watchdog.h"

namespace loom::dist {

bool launched_by_mpi() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr; }

std::shared_ptr<Group> init(int* argc, char*** argv) {
  if (!launched_by_mpi()) return std::make_shared<LocalGroup>("world");
  int initialized = 0;
  MPI_Initialized(&initialized);
  LOOM_CHECK(!initialized, "dist: init() called twice");
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    throw DistError("dist: this MPI library does not support MPI_THREAD_MULTIPLE (needed for one thread per group)");
  }
  // A duplicate, so that Loom's traffic never matches messages of other code using MPI_COMM_WORLD.
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  return std::make_shared<MpiGroup>(comm, "world", kDefaultTimeoutS, std::make_shared<Watchdog>());
}

void finalize() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MpiGroup::shutdown_all();
  MPI_Finalize();
}

void abort_on_error(const std::function<void()>& fn) {
  auto report = [](int code, const char* what) {
    int rank = world_rank();
    abort_job(code, rank >= 0 ? fmt::format("rank {}: {}", rank, what) : std::string(what));
  };
  try {
    fn();
  } catch (const DistError& e) {
    report(3, e.what());
  } catch (const Error& e) {
    // Bad input (a config, a missing file, a layout that cannot run) usually fails every rank
    // alike: rank 0 reports it and ends the job; another rank's error of its own still appears,
    // two seconds later (half a second was not enough for 8 ranks on 2 busy cores).
    if (world_rank() > 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    report(2, e.what());
  } catch (const std::exception& e) {
    report(1, e.what());
  } catch (...) {
    report(1, "unknown exception");
  }
}

}  // namespace loom::dist
