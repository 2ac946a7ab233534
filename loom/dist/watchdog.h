// The watchdog that turns a hung collective into a clean job abort, and abort_job(), the one way
// a rank ends the whole job: it prints `error: <message>` once and takes every other rank down.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace loom::dist {

// Prints `error: <message>` to stderr (only the first caller in a process does), then
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is running, otherwise exits with code.
[[noreturn]] void abort_job(int code, const std::string& message);

// The rank of this process in MPI_COMM_WORLD, or -1 when MPI is not running.
int world_rank();

// One thread per process times the ops in flight; an op running past its timeout aborts the
// job with exit code 3 and `error: rank R: <what> did not finish within T s`.
class Watchdog {
 public:
  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // what: "<group>.<op>". Returns the id to pass to finish() once the op completed.
  uint64_t start(std::string what, double timeout_s);
  void finish(uint64_t id);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point deadline;
    std::string what;
    double timeout_s;
  };
  void run();

  int rank_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Entry> in_flight_;
  std::thread thread_;
};

}  // namespace loom::dist
