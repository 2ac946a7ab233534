// Starting and stopping the distributed runtime. Under mpirun (or srun with PMIx) init() brings up
// MPI with MPI_THREAD_MULTIPLE and returns an MpiGroup over all ranks; a plain process gets a
// one-rank LocalGroup and never touches MPI, so `loom` without mpirun works anywhere.
#pragma once

#include <functional>
#include <memory>

#include "loom/dist/group.h"

namespace loom::dist {

// True when an MPI launcher started this process (OMPI_COMM_WORLD_SIZE or PMIX_RANK is set).
bool launched_by_mpi();

// Call once, from main, before anything else reads argv. Returns the group "world".
std::shared_ptr<Group> init(int* argc, char*** argv);

// Stops every group's communication thread and finalizes MPI; call from main at the end. Groups
// still alive afterwards can only be destroyed.
void finalize();

// Runs fn; an exception ends the whole job, reported once as `error: rank R: <message>` (no rank
// without MPI) with exit code 3 for a DistError, 2 for any other loom::Error, 1 for anything else.
void abort_on_error(const std::function<void()>& fn);

}  // namespace loom::dist
