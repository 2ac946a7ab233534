// Texts that stress every branch of a tokenizer: prose, contractions in both cases, code,
// numbers, whitespace runs, many scripts, emoji, combining marks, odd spaces, special strings;
// and random strings over an alphabet of the same. Shared by the reference tests.
#pragma once

#include <random>
#include <string>
#include <vector>

namespace loom::tokenizer {

inline const std::vector<std::string> kCorpus = {
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst "
    "of times; it was the age of wisdom, it was the age of foolishness...",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.\n\nHe said: "
    "\"That's one small step for [a] man, one giant leap for mankind.\"",
    // contractions, and the uppercase forms GPT-2 does not split specially
    "I'm sure you're right, we've seen it; they'll come and he'd go. It's Bob's, isn't it?",
    "I'M SURE YOU'RE RIGHT, WE'VE SEEN IT; THEY'LL COME AND HE'D GO. IT'S BOB'S, ISN'T IT?",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE ''s ''' '' rock 'n' roll O'Reilly 'sup 'llama 'x",
    "don't can't won't shan't y'all ma'am o'clock 'twas",
    // code
    "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n"
    "\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "def f(x):\n    if x is None:\n        return {'a': [1, 2.5e-3]}\n    return x ** 2  # square\n",
    "const f = (a, b) => a?.b ?? `${b}`; // JS\n<div class=\"x\">&nbsp;</div>",
    // numbers
    "3.14159 2,718 1e10 0x1F -42 +7 100% $19.99 2024-05-01 12:34:56 1/2 007 12345678901234567890",
    "Numbers in other scripts: ١٢٣ १२३ ௧௨ ²³ ½ Ⅻ ⑦ 〇",
    // whitespace: runs, tabs, newlines, trailing and leading
    "a  b   c    d\te\t\tf\n\ng\n\n\nh \n i\r\nj",
    "   leading spaces", "trailing spaces   ", "trailing newlines\n\n", "\n", " ", "\t \t \n",
    "word\n  indented\n\tTabbed\n \n\n  \n",
    "x" + std::string(200, ' ') + "y" + std::string(50, '\n') + "z" + std::string(30, ' '),
    // unicode: accents, CJK, emoji (surrogate pairs in JS), Arabic, combining marks, spaces
    "café naïve résumé Ångström Œuvre façade Zürich",
    "日本語のテキストです。中文测试，한국어 텍스트",
    "Emoji: 😀 👍🏽 👨‍👩‍👧 🇫🇷 ❤️ 🙂🙃 — done",
    "العربية نص تجريبي، مع أرقام ٣٤٥",
    "e\u0301 a\u0308 n\u0303o Z\u0351\u0363a\u0344lg\u0368o \u0915\u093F\u0924\u093E\u092C "
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "no\u00A0break x\u3000y \u2028line\u2029para \uFEFFbom \u200Bzwsp \u0085nel \u180Emvs "
    "\u2003em\u2009thin \u202Fnarrow \u205Fmath \u1680ogham",
    "a \u00A0b  \u3000c\u00A0 d \u3000\u3000e \u00A0",
    "Ελληνικά Русский текст עברית ไทย ქართული Հայերեն",
    "mixed: αβγ123δεζ ABC١٢٣ x²+y²=z² ½+¼ ①②③",
    // punctuation runs and the special token as ordinary text
    "!!!??? ... --- ((( ))) «quotes» „German“ “smart” ‘single’ — – • … € £ ¥",
    "https://example.com/path?q=1&r=two#frag user@example.org C++ a.b.c ~/.config",
    "text <|endoftext|> more text<|endoftext|>",
    std::string(1000, '='),
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
};

// Random strings over an alphabet that stresses every branch of the pre-tokenizer.
inline std::vector<std::string> fuzz_corpus() {
  const std::vector<std::string> alphabet = {
      " ", " ", " ", "\n", "\t", "\r", "'", "'", "s", "t", "r", "e", "v", "l", "d", "m", "S",
      "a", "Z", "1", "0", ".", ",", "-", "é", "\u00A0", "\u3000", "日", "😀", "\u0301", "٣",
      "\u2028", "\u0085", "ñ", "Ⅻ", "\u200B", "\uFEFF", "<", "|"};
  std::mt19937 rng(1234);
  std::vector<std::string> out;
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int n = int(rng() % 40);
    for (int j = 0; j < n; ++j) s += alphabet[rng() % alphabet.size()];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace loom::tokenizer
