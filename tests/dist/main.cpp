// main() of test_dist: brings up the world (MPI under mpirun, one local rank without), runs the
// tests on every rank with only rank 0 printing the report, and makes all ranks agree on the
// exit code. The --hang/--kill/--throw modes are failure scenarios driven by expect_exit.sh.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "loom/dist/mesh.h"
#include "loom/dist/world.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {

std::shared_ptr<Group>& world() {
  static std::shared_ptr<Group> w;
  return w;
}

namespace {

// Ranks other than 0 report only their failures, tagged with their rank.
class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.message());
  }

 private:
  int rank_;
};

// So the driver can check that no rank outlives the job.
void record_pid(int rank) {
  if (const char* dir = std::getenv("LOOM_TEST_PID_DIR")) std::ofstream(std::string(dir) + "/" + std::to_string(rank)) << getpid();
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

void all_reduce_once(Group& g) {
  Tensor t = Tensor::ones({4});
  g.all_reduce(t, ReduceOp::sum)->wait();
}

// Each scenario must end the job with a failure; returning means the runtime did not.
void run_failure_mode(const std::string& mode, const std::shared_ptr<Group>& w) {
  int rank = w->rank();
  record_pid(rank);
  if (mode == "--hang") {  // rank 1 never joins: the others time out in world.all_reduce
    w->set_timeout_s(2);
    if (rank == 1) sleep_s(60);
    all_reduce_once(*w);
  } else if (mode == "--hang-tp") {  // dp=2 x tp=2; rank 1 skips its tp all_reduce, so rank 0 hangs in it
    w->set_timeout_s(2);
    Mesh mesh(w, ParallelDims{.dp = 2, .tp = 2});
    if (rank != 1) all_reduce_once(*mesh.tp());
    sleep_s(60);
  } else if (mode == "--kill") {  // rank 1 dies mid-run; the timeout is long so mpirun must end the job
    w->set_timeout_s(30);
    for (int step = 0; step < 100; ++step) {
      if (rank == 1 && step == 5) std::raise(SIGKILL);
      all_reduce_once(*w);
      sleep_s(0.02);
    }
  } else if (mode == "--throw") {  // rank 1 throws while the others wait for it
    w->set_timeout_s(30);
    abort_on_error([&] {
      if (rank == 1) throw Error("test: boom on purpose");
      all_reduce_once(*w);
    });
  }
  std::fprintf(stderr, "rank %d: failure mode %s returned\n", rank, mode.c_str());
}

}  // namespace

}  // namespace loom::dist::test

int main(int argc, char** argv) {
  using namespace loom;
  auto& world = dist::test::world();
  world = dist::init(&argc, &argv);
  std::string first = argc > 1 ? argv[1] : "";
  if (first == "--hang" || first == "--hang-tp" || first == "--kill" || first == "--throw") {
    dist::test::run_failure_mode(first, world);
    world.reset();
    dist::finalize();
    return 0;
  }

  testing::InitGoogleTest(&argc, argv);
  // A test that desynchronises the ranks then aborts instead of hanging.
  world->set_timeout_s(60);
  int rank = world->rank();
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new dist::test::FailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS();
  Tensor any = Tensor::from_ints({failed}, {1}, DType::i32);
  world->all_reduce(any, dist::ReduceOp::max)->wait();
  int rc = int(any.to_ints()[0]);
  if (rc != 0 && failed == 0 && rank == 0) std::fprintf(stderr, "test_dist: tests failed on another rank\n");
  world.reset();
  dist::finalize();
  return rc;
}
