// The device mesh: ParallelDims {dp, tp, pp, cp} laid over the world's ranks with tp fastest,
// then cp, dp, pp (Megatron's order), and one sub-group per dimension. Built and validated once,
// then passed explicitly to whatever parallelizes the model.
#pragma once

#include <memory>

#include "loom/dist/group.h"

namespace loom::dist {

struct ParallelDims {
  int dp = 1, tp = 1, pp = 1, cp = 1;
};

// This rank's position along each dimension, each in [0, dim).
struct MeshCoords {
  int dp = 0, tp = 0, pp = 0, cp = 0;
  bool operator==(const MeshCoords&) const = default;
};

class Mesh {
 public:
  // Collective over world. Throws loom::Error when a dim is < 1 or dp·tp·pp·cp != world->size().
  Mesh(std::shared_ptr<Group> world, ParallelDims dims);

  static MeshCoords coords_of(const ParallelDims& dims, int rank);
  static int rank_of(const ParallelDims& dims, const MeshCoords& coords);

  const ParallelDims& dims() const { return dims_; }
  const MeshCoords& coords() const { return coords_; }
  // The ranks that differ from this one only along that dimension; rank in it = the coordinate.
  const std::shared_ptr<Group>& world() const { return world_; }
  const std::shared_ptr<Group>& tp() const { return tp_; }
  const std::shared_ptr<Group>& cp() const { return cp_; }
  const std::shared_ptr<Group>& dp() const { return dp_; }
  const std::shared_ptr<Group>& pp() const { return pp_; }

 private:
  std::shared_ptr<Group> split_along(int MeshCoords::*dim, const char* name) const;

  std::shared_ptr<Group> world_;
  ParallelDims dims_;
  MeshCoords coords_;
  std::shared_ptr<Group> tp_, cp_, dp_, pp_;
};

}  // namespace loom::dist
