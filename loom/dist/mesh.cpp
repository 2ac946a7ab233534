// Mesh: validation of ParallelDims against the world size, rank <-> coordinate maps and the
// MPI_Comm_split of the world into tp, cp, dp and pp groups.
#include "loom/dist/mesh.h"

namespace loom::dist {

namespace {

void validate(const ParallelDims& d, int world_size) {
  for (auto [name, v] : {std::pair{"dp", d.dp}, {"tp", d.tp}, {"pp", d.pp}, {"cp", d.cp}})
    LOOM_CHECK(v >= 1, "parallel: {} must be at least 1, got {}", name, v);
  int64_t product = int64_t(d.dp) * d.tp * d.pp * d.cp;
  LOOM_CHECK(product == world_size, "parallel: dp·tp·pp·cp = {}·{}·{}·{} = {} does not match the world size {}", d.dp,
             d.tp, d.pp, d.cp, product, world_size);
}

}  // namespace

MeshCoords Mesh::coords_of(const ParallelDims& d, int rank) {
  MeshCoords c;
  c.tp = rank % d.tp;
  c.cp = rank / d.tp % d.cp;
  c.dp = rank / (d.tp * d.cp) % d.dp;
  c.pp = rank / (d.tp * d.cp * d.dp);
  return c;
}

int Mesh::rank_of(const ParallelDims& d, const MeshCoords& c) { return ((c.pp * d.dp + c.dp) * d.cp + c.cp) * d.tp + c.tp; }

Mesh::Mesh(std::shared_ptr<Group> world, ParallelDims dims) : world_(std::move(world)), dims_(dims) {
  validate(dims_, world_->size());
  coords_ = coords_of(dims_, world_->rank());
  tp_ = split_along(&MeshCoords::tp, "tp");
  cp_ = split_along(&MeshCoords::cp, "cp");
  dp_ = split_along(&MeshCoords::dp, "dp");
  pp_ = split_along(&MeshCoords::pp, "pp");
}

// Ranks sharing every other coordinate get the same color: the rank whose coordinate along dim is 0.
std::shared_ptr<Group> Mesh::split_along(int MeshCoords::*dim, const char* name) const {
  MeshCoords base = coords_;
  base.*dim = 0;
  return world_->split(rank_of(dims_, base), coords_.*dim, name);
}

}  // namespace loom::dist
