// Reference GPT-2 encodings for test_tokenizer: node gpt2_reference.js <package dir> <in> <out>
// reads a JSON array of strings and writes the npm gpt-3-encoder's ids for each as JSON.
const fs = require('fs');
const [pkg, input, output] = process.argv.slice(2);
const { encode } = require(pkg);
const texts = JSON.parse(fs.readFileSync(input, 'utf-8'));
fs.writeFileSync(output, JSON.stringify(texts.map(t => encode(t))));
