// Hugging Face tokenizers (the Rust library's Node binding), the reference for Loom's
// tokenizer.json pipeline. Usage: node hf_reference.js NODE_MODULES TOKENIZER_JSON < texts.json
// where texts.json is a JSON array of strings; prints a JSON array of
// {"ids": [...], "decoded": "..."}: the ids of each text encoded without adding special tokens
// (special strings in the text still become their ids) and those ids decoded back, keeping
// special tokens.
const path = require('path');
const fs = require('fs');
const {Tokenizer} = require(path.join(process.argv[2], 'tokenizers'));
(async () => {
  const tok = Tokenizer.fromFile(process.argv[3]);
  const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = [];
  for (const text of texts) {
    const ids = (await tok.encode(text, null, {addSpecialTokens: false})).getIds();
    out.push({ids: Array.from(ids), decoded: await tok.decode(Array.from(ids), false)});
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
