// Collectives as autograd pairs (Megatron's mappings.py): each op's backward is the collective
// paired with its forward, so tensor and sequence parallelism are written as ordinary ops and
// autograd moves the gradients. All ranks of the group call each op in the same order; `dim`
// splits must divide evenly by the group's size.
//
//   op                 forward                        backward
//   copy_to            identity                       all-reduce (sum)
//   reduce_from        all-reduce (sum)               identity
//   scatter_to         keep this rank's chunk of dim  all-gather along dim
//   gather_from        all-gather along dim           keep this rank's chunk
//   all_gather_to      all-gather along dim           reduce-scatter along dim (sequence parallel)
//   reduce_scatter_to  reduce-scatter along dim       all-gather along dim (sequence parallel)
#pragma once

#include <memory>

#include "loom/core/tensor.h"
#include "loom/dist/group.h"

namespace loom::parallel {

Tensor copy_to(const Tensor& x, const std::shared_ptr<dist::Group>& group);
Tensor reduce_from(const Tensor& x, const std::shared_ptr<dist::Group>& group);
Tensor scatter_to(const Tensor& x, const std::shared_ptr<dist::Group>& group, int64_t dim);
Tensor gather_from(const Tensor& x, const std::shared_ptr<dist::Group>& group, int64_t dim);
Tensor all_gather_to(const Tensor& x, const std::shared_ptr<dist::Group>& group, int64_t dim);
Tensor reduce_scatter_to(const Tensor& x, const std::shared_ptr<dist::Group>& group, int64_t dim);

}  // namespace loom::parallel
