// The op table: every op × dtype checked against its naive double-precision reference
// (OpForward, which also compares half/f32 gradients with f64 ones) and every differentiable
// op checked in f64 against central finite differences (OpGrad). The rows live in the
// per-family files test_ops_<family>.cpp, each instantiating these two suites.
#include "op_testing.h"

namespace optest {

TEST_P(OpForward, MatchesReference) { check_forward(*GetParam().entry, GetParam().dtype); }

TEST_P(OpGrad, MatchesFiniteDifferences) { check_grad(*GetParam()); }

}  // namespace optest
