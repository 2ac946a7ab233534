// Pipeline-parallel training matches one process: `mpirun -np N loom train --parallel.pp=P` with
// each schedule gives the per-step losses and gradient norms of one process on the same global
// batch (within 1e-5 relative) and the same final parameters (within 1e-5 at lr 1e-4), for an
// 8-layer
// LLaMA-GQA (untied head) and GPT-2 (tied embedding and head, held by the first and last stage)
// at pp 2 and 4 with GPipe, 1F1B and interleaved 1F1B (2 virtual stages), with an uneven
// pp_layout, ZeRO-3 (dp 2 × pp 2, GPipe and interleaved) and the 3D hybrid dp 2 × tp 2 × pp 2
// with ZeRO-1. A checkpoint written under
// dp 2 × tp 2 × pp 2 resumes under pp 4, under dp 4 and in one process with the losses of the run
// that never stopped.
#include <chrono>

#include "train_util.h"

namespace {

struct PpCase {
  const char* preset;
  Layout layout;
  std::string extra;
};

TEST(PipelineParallel, EveryScheduleMatchesOneProcess) {
  // 4 micro-batches of 1 sequence per data-parallel rank and step: a global batch of 4.
  const PpCase cases[] = {
      {"llama-tiny", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=gpipe"},
      {"llama-tiny", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=1f1b --training.recompute=blocks"},
      {"llama-tiny", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=interleaved --parallel.virtual_stages=2"},
      {"llama-tiny", {2, 2, 1, 4, 1, 2}, "--parallel.pp_layout=[3,5]"},
      {"llama-tiny", {4, 0, 1, 4, 1, 4}, "--parallel.schedule=gpipe"},
      {"llama-tiny", {4, 0, 1, 4, 1, 4}, "--parallel.schedule=1f1b"},
      {"llama-tiny", {4, 1, 1, 4, 1, 4}, "--parallel.schedule=interleaved --parallel.virtual_stages=2"},
      {"llama-tiny", {8, 1, 1, 2, 2, 2}, "--parallel.schedule=1f1b"},
      {"llama-tiny", {4, 3, 1, 2, 1, 2}, "--parallel.schedule=gpipe"},
      {"llama-tiny", {4, 3, 1, 2, 1, 2}, "--parallel.schedule=interleaved --parallel.virtual_stages=2"},
      {"gpt2-tiny", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=1f1b"},
      {"gpt2-tiny", {4, 1, 1, 4, 1, 4}, "--parallel.schedule=interleaved --parallel.virtual_stages=2"},
      {"gpt2-tiny", {8, 1, 1, 2, 2, 2}, "--parallel.schedule=1f1b --parallel.sequence_parallel=true"},
      {"gpt2-tiny", {4, 3, 1, 2, 1, 2}, "--parallel.schedule=gpipe"},
  };
  for (const char* preset : {"llama-tiny", "gpt2-tiny"}) {
    Scratch d;
    // lr 1e-4: AdamW's rounding noise on near-zero gradients scales with lr (see expect_same_params).
    const std::string model = std::string(" --optimizer.lr=1e-4 --model.n_layer=8 --model.preset=") + preset;
    train(d, Layout{0, 0, 4, 1}, "one", model);
    for (const PpCase& c : cases) {
      if (std::string(c.preset) != preset) continue;
      const Layout& l = c.layout;
      ASSERT_EQ(l.batch * l.accum * (l.np / (l.tp * l.pp)), 4) << "the global batch of every case is 4";
      const std::string what = fmt::format("{} np {} tp {} pp {} zero {} {}", preset, l.np, l.tp, l.pp, l.zero, c.extra);
      const std::string name = fmt::format("case{}", &c - cases);
      train(d, l, name, model + " " + c.extra);
      expect_same_run(d, name, "one", what, std::string(preset) == "gpt2-tiny" ? "attn.wk.bias" : "");
    }
  }
}

TEST(PipelineParallelCheckpoint, ResumesUnderAnotherLayout) {
  Scratch d;
  const std::string model = " --model.n_layer=8";
  train(d, Layout{8, 1, 1, 2, 2, 2}, "full", "--checkpoint.every=10" + model);
  expect_resumes(d, "full", 10, {{"one", {0, 0, 4, 1}}, {"pp4", {4, 0, 1, 4, 1, 4}}, {"dp4", {4, 1, 1, 1}}}, model);
}

// Layouts that cannot run: one error line, from rank 0, exit 2 on every rank, within seconds.
TEST(ModelParallelLayouts, InvalidOnesAreOneErrorLine) {
  Scratch d;
  struct Case {
    std::pair<std::string, std::string> args;  // mpirun's, loom train's
    std::string want;
  };
  const Case cases[] = {
      {{"-np 3 ", "--parallel.tp=3 --model.preset=gpt2-tiny"}, "tensor parallel: attention heads of 4 does not split over 3 ranks"},
      {{"-np 4 ", "--parallel.pp=4"}, "pipeline: 4 stages × 1 virtual stages make 4 chunks for 2 layers; each needs at least one"},
      {{"-np 2 ", "--parallel.dp=2 --parallel.tp=2"}, "dp·tp·pp·cp = 2·2·1·1 = 4 does not match the world size 2"},
      {{"-np 2 ", "--parallel.pp=2 --model.n_layer=6 --parallel.schedule=interleaved --parallel.virtual_stages=2 --training.grad_accum=2"},
       "the interleaved schedule needs the 6 layers to be a multiple of stages × virtual stages = 4"},
      {{"-np 2 ", "--parallel.pp=2 --parallel.schedule=interleaved --parallel.virtual_stages=2 --model.n_layer=4 --training.grad_accum=3"},
       "the interleaved schedule needs the micro-batches (training.grad_accum = 3) to be a multiple of the stages (parallel.pp = 2)"},
  };
  for (const auto& [args, want] : cases) {
    std::string out;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string cmd = std::string(LOOM_MPIEXEC) + " --oversubscribe " + args.first + LOOM_BIN " train --model.preset=llama-tiny --data.train=" +
                            (d / "train.bin") + " --training.steps=2 --training.seq_len=16 --training.threads=1 " + args.second;
    EXPECT_EQ(run(cmd, &out), 2) << cmd << "\n" << out;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0) << cmd;
    size_t errors = 0;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) errors += line.rfind("error:", 0) == 0;
    EXPECT_EQ(errors, 1u) << cmd << "\n" << out;
    EXPECT_NE(out.find("error: rank 0: "), std::string::npos) << out;
    EXPECT_NE(out.find(want), std::string::npos) << cmd << "\n" << out;
  }
}

}  // namespace
