// Watchdog and job abort. The watchdog sleeps until the earliest deadline of the ops in flight,
// so it costs nothing while collectives finish on time.
#include "loom/dist/watchdog.h"

#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace loom::dist {

namespace {

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

}  // namespace

void abort_job(int code, const std::string& message) {
  // A second failure (the watchdog firing while an exception is being reported) stays silent and
  // waits for the first to end the process.
  static std::atomic<bool> aborting{false};
  if (aborting.exchange(true)) {
    for (;;) pause();
  }
  std::fflush(stdout);
  fmt::print(stderr, "error: {}\n", message);
  std::fflush(stderr);
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int world_rank() {
  if (!mpi_running()) return -1;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

Watchdog::Watchdog() : rank_(world_rank()), thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t Watchdog::start(std::string what, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout_s));
  uint64_t id;
  {
    std::lock_guard lock(mutex_);
    id = next_id_++;
    in_flight_.emplace(id, Entry{deadline, std::move(what), timeout_s});
  }
  cv_.notify_all();
  return id;
}

void Watchdog::finish(uint64_t id) {
  std::lock_guard lock(mutex_);
  in_flight_.erase(id);
}

void Watchdog::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    const Entry* first = nullptr;
    for (const auto& [id, e] : in_flight_)
      if (!first || e.deadline < first->deadline) first = &e;
    if (!first) {
      cv_.wait(lock);
      continue;
    }
    auto deadline = first->deadline;  // the entry may be erased while we sleep
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string message = fmt::format("rank {}: {} did not finish within {:g} s", rank_, first->what, first->timeout_s);
      lock.unlock();
      abort_job(3, message);
    }
    cv_.wait_until(lock, deadline);
  }
}

}  // namespace loom::dist
