// Runs GGUF files in llama.cpp itself (the prebuilt library of npm's node-llama-cpp, CPU) for the
// export tests. Usage: node llama_cpp.mjs NODE_MODULES JOB.json; the job is
//   {"runs": [{"model": FILE, "lora": FILE|null, "prompts": [TEXT...], "max_tokens": N}], "info": [FILE...]}
// and stdout gets one JSON object: for each run, per prompt, llama.cpp's token ids of the prompt
// (special tokens parsed, none added) and the ids of its greedy continuation from them (stopping
// at an end-of-generation token, which is not included, or after max_tokens); for each "info"
// file, the metadata and tensor infos as node-llama-cpp's own GGUF parser reads them.
import fs from "node:fs";
import path from "node:path";

const [modules, jobFile] = process.argv.slice(2);
const { getLlama, readGgufFileInfo } = await import(path.join(modules, "node-llama-cpp/dist/index.js"));
const job = JSON.parse(fs.readFileSync(jobFile, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", progressLogs: false });

const out = { runs: [], info: {} };
for (const run of job.runs ?? []) {
  const model = await llama.loadModel({ modelPath: run.model });
  const context = await model.createContext({
    contextSize: 128, sequences: 1, threads: 1,
    ...(run.lora ? { lora: { adapters: [{ filePath: run.lora, scale: 1 }] } } : {}),
  });
  const sequence = context.getSequence();
  const results = [];
  for (const prompt of run.prompts) {
    const ids = Array.from(model.tokenize(prompt, true));
    const generated = [];
    if (run.max_tokens > 0) {
      for await (const token of sequence.evaluate(ids, { temperature: 0 })) {
        if (model.isEogToken(token)) break;
        generated.push(token);
        if (generated.length >= run.max_tokens) break;
      }
    }
    await sequence.clearHistory();
    results.push({ prompt, ids, generated });
  }
  out.runs.push({ model: run.model, lora: run.lora ?? null, results });
  await context.dispose();
  await model.dispose();
}
for (const file of job.info ?? []) {
  const info = await readGgufFileInfo(file, { readTensorInfo: true, ignoreKeys: [] });
  out.info[file] = {
    version: info.version,
    metadata: info.metadata,
    tensors: info.fullTensorInfo.map(t => ({ name: t.name, dims: t.dimensions, type: t.ggmlType, offset: t.offset })),
  };
}
process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
