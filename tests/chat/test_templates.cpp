// The Jinja subset on small hand-written templates, byte for byte against Python's jinja2 as
// transformers runs it: whitespace control, printing Python values, operators, loops, filters,
// tests, str and dict methods, namespaces, macros, undefined values, and templates that fail.
#include "reference.h"

namespace loom::chat::testing {
namespace {

const Json kContext = Json::parse(R"({
  "x": 3, "y": -7, "f": 1.25, "s": "héllo wörld", "e": "", "n": null, "t": true,
  "xs": [1, 2, 3], "words": ["b", "a", "B"], "d": {"b": 2, "a": 1, "items": [9]},
  "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
           {"role": "assistant", "content": "yo", "tool_calls": [{"function": {"name": "f", "arguments": {"k": "v"}}}]}]
})");

class Templates : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = reference_missing(); !why.empty()) GTEST_SKIP() << why;
  }

  static void check(const std::vector<std::string>& templates) {
    std::vector<Json> cases;
    for (const std::string& t : templates) cases.push_back(render_case(t, kContext));
    EXPECT_EQ(expect_same_as_reference(cases), cases.size());
  }
};

TEST_F(Templates, WhitespaceControl) {
  check({
      "a\n  {% if t %}\n    b\n  {% endif %}\nc\n",
      "a\n\t {%+ if t %}x{% endif +%}\ny",
      "a\n  {# comment #}\nb",
      "a\n  {{ 1 }}\n  {% if t %}z{% endif %}  \nq",
      "a  {%- if t -%}  b  {%- endif -%}  c",
      "{{- 'a' -}}  \n  {{- 'b' }}  {{ 'c' -}}  \n d",
      "{%- if t -%}\n  a  \n{%- endif -%}\n",
      "line1\r\nline2\r{% if t %}\r\nx{% endif %}\r\n",
      "one trailing newline goes\n\n",
      "x\u3000{%- if t %}y{% endif %}",
      "x\n\u3000 {% if t %}y{% endif %}",
      "{% if t %}\n\n{% endif %}",
      "{# comment #}x{#- c -#}  y\n{# c #}\nz",
      "  {% for i in xs %}\n    {{ i }}\n  {% endfor %}\n",
      "{% for i in xs -%}\n  {{ i }}\n{%- endfor %}",
      "{{ {'a': {'b': 1}} }}",
  });
}

TEST_F(Templates, PrintsPythonValues) {
  check({
      "{{ 1.0 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 0.1 + 0.2 }} {{ 1 / 3 }} {{ 1e-5 }} {{ 0.0001 }} {{ -0.0 }} {{ 2.5e-300 * 1e-20 }}",
      "{{ xs }} {{ d }} {{ n }} {{ t }} {{ s }} {{ (1,) }} {{ () }} {{ (1, 'a') }} {{ 1, 2 }}",
      "{{ ['a', \"b'c\", 'd\"e', 'x\\ny', 'tab\\t', 'é', '\\u200b', '\\x7f', '\\\\'] }}",
      "{{ msgs }}",
      "{{ d.items() }} {{ d.keys() }} {{ d.values() }} {{ namespace(a=[1]) }}",
      "{{ 'a' 'b' \"c\" }} {{ '\\101\\x42\\u0043\\N' }} {{ 'it\\'s' }}",
      "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 1_0.5 }} {{ 1e3 }} {{ 1E-2 }}",
      "{{ [1, 2,] }} {{ {'a': 1,} }} {{ {} }} {{ [] }} {{ xs.0 }} {{ msgs.1.role }}",
  });
}

TEST_F(Templates, Operators) {
  check({
      "{{ 10 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 0.5 }}",
      "{{ 1 + 2 * 3 - 4 / 2 }} {{ 2 ** 3 ** 2 }} {{ 'a' ~ 1 + 2 }} {{ -xs|length }} {{ -1|abs }} {{ not xs|length }}",
      "{{ 'a' ~ 1 ~ none ~ [1] ~ f }} {{ 'ab' * 3 }} {{ 3 * 'ab' }} {{ [1] * 2 }} {{ [1] + [2] }} {{ (1,) + (2,) }} {{ true + 1 }}",
      "{{ 'a' in 'cat' }} {{ 2 in xs }} {{ 5 not in xs }} {{ 'a' in d }} {{ 'q' in d }} {{ x in [] }}",
      "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ (1,) < (1, 2) }} {{ none == none }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 1 != 2 != 1 }}",
      "{{ {'a': 1} == {'a': 1} }} {{ [1, [2]] == [1, [2]] }} {{ (1, 2) == [1, 2] }} {{ 'a' == 'a' }} {{ undefined == undefined }}",
      "{{ d.keys() == {'a': 0, 'b': 0, 'items': 0}.keys() }} {{ d.items() == d.items() }} {{ d.values() == d.values() }} {{ d.keys() == ['b'] }}",
      "{{ t and x }} {{ n and x }} {{ n or 'z' }} {{ e or 0 or [] }} {{ not n }}",
      "{{ 'a' if t else 'b' }} {{ 'a' if n else 'b' if x else 'c' }} {{ 1 if false }}|",
      "{{ 1 / 0 }}",
      "{{ 5 % 0 }}",
      "{{ 'a' + 1 }}",
      "{{ [1] + (2,) }}",
      "{{ 'a' < 1 }}",
      "{{ 1 in 'abc' }}",
  });
}

TEST_F(Templates, Loops) {
  check({
      "{% for i in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
      "{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.depth }}|{% endfor %}",
      "{% for i in [] %}a{% else %}empty{% endfor %} {% for i in xs %}{% else %}no{% endfor %}",
      "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for c in s %}[{{ c }}]{% endfor %}",
      "{% for i in xs if i > 1 %}{{ i }}{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}",
      "{% for i in xs %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% if i == 3 %}{% break %}{% endif %}{% endfor %}",
      "{% for a in xs %}{% for b in xs %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}",
      "{% for i in xs %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
      "{% for a, b in [[1, 2], 'xy'] %}{{ a }}{{ b }}{% endfor %} {% for a, (b, c) in [[1, [2, 3]]] %}{{ a }}{{ b }}{{ c }}{% endfor %}",
      "{% for m in msgs[::-1] %}{{ m.role }}{% endfor %} {% for i in range(3) %}{{ i }}{% endfor %} {% for i in range(10, 0, -3) %}{{ i }}{% endfor %}",
      "{% set c = 0 %}{% for i in xs %}{{ c }}{% set c = i %}{{ c }}{% endfor %}|{{ c }}",
      "{% set c = 0 %}{% for i in [] %}{% else %}{% set c = 1 %}{{ c }}{% endfor %}{{ c }}",
      "{% for i in xs %}{% if loop.first %}{% set c = 5 %}{% endif %}{{ c }}{% endfor %}",
      "{% for i in undefined_list %}x{% else %}nothing{% endfor %}",
      "{% for i in n %}{% endfor %}",
      "{% for a, b in xs %}{% endfor %}",
  });
}

TEST_F(Templates, Filters) {
  check({
      "{{ '  x  '|trim }}|{{ '--x--'|trim('-') }}|{{ 5|trim }}|{{ xs|join(', ') }}|{{ xs|join }}|{{ msgs|join(',', attribute='role') }}",
      "{{ xs|first }} {{ xs|last }} {{ xs|length }} {{ d|length }} {{ s|count }} {{ []|first }}|{{ 'ab'|last }} {{ d|first }}",
      "{{ s|upper if false else s|length }} {{ 'hello world'|title }} {{ 'hello WORLD'|capitalize }} {{ 'a-b c(d'|title }} {{ 'AbC'|lower }}",
      "{{ 'abc'|replace('b', 'B') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 12|replace(1, 3) }}",
      "{{ undefined_var|default('dflt') }} {{ e|default('x') }}|{{ e|default('x', true) }} {{ n|d('none') }}",
      "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '1_000'|int }} {{ ' 12 '|int }} {{ true|int }} {{ none|int }}",
      "{{ '3.5'|float }} {{ '1e3'|float }} {{ ' -2.5e-3 '|float }} {{ 'inf'|float }} {{ 'nan'|float }} {{ 'abc'|float(7) }} {{ 2|float }}",
      "{{ -3|abs }} {{ -2.5|abs }} {{ 5|string }} {{ xs|string }} {{ n|string }} {{ xs|list }} {{ 'ab'|list }} {{ d|list }}",
      "{{ d|items|list }} {{ xs|reverse|list }} {{ 'abc'|reverse }} {{ d|dictsort }} {{ {'b': 1, 'A': 2}|dictsort }} "
      "{{ {'b': 1, 'a': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}",
      "{{ [3, 1, 2]|sort }} {{ words|sort }} {{ words|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} "
      "{{ [{'a': 2}, {'a': 1}]|sort(attribute='a') }} {{ ['a', 'A', 'b']|unique|list }} {{ [1, 1.0, true, 2]|unique|list }}",
      "{{ msgs|selectattr('role', 'equalto', 'user')|list }} {{ msgs|map(attribute='role')|join(',') }} "
      "{{ msgs|rejectattr('role', 'eq', 'user')|list|length }} {{ msgs|selectattr('tool_calls', 'undefined')|list|length }}",
      "{{ xs|select('odd')|list }} {{ xs|reject('odd')|list }} {{ xs|map('string')|list }} {{ [0, 1, '']|select|list }} "
      "{{ msgs|map(attribute='nope', default='D')|list }} {{ msgs|selectattr('tool_calls.0.function.name', 'eq', 'f')|list|length }}",
      "{{ d|tojson }} {{ msgs|tojson }} {{ d|tojson(indent=2) }} {{ xs|tojson(indent=0) }} {{ {'a': [], 'b': {}}|tojson(indent=2) }}",
      "{{ 'é\"\\n\\u0001'|tojson }} {{ 'é😀'|tojson(ensure_ascii=true) }} {{ d|tojson(separators=(',', ':')) }} "
      "{{ d|tojson(sort_keys=true) }} {{ 1.5|tojson }} {{ 1e100|tojson }} {{ none|tojson }} {{ (1, 2)|tojson }} {{ d|tojson(indent='\\t') }}",
      "{% set r = xs|select('odd') %}{{ r|list }}{{ r|list }}{% if r %}generators are true{% endif %}",
      "{{ 'a'|safe + '<b>' }} {{ '<a>' + 'b'|safe }} {{ 'x'|safe }} {{ ('<'|safe) ~ '<' }}",
      "{{ undefined|tojson }}",
      "{{ xs|reverse|length }}",
      "{{ xs|dictsort }}",
  });
}

TEST_F(Templates, Tests) {
  check({
      "{{ z is defined }}{{ xs is defined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ xs is iterable }}{{ xs is sequence }}"
      "{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ t is boolean }}{{ t is true }}{{ 1 is false }}{{ z is undefined }}",
      "{{ 4 is divisibleby 2 }}{{ 3 is odd }}{{ 3 is even }}{{ 3 is gt 2 }}{{ 3 is lessthan 2 }}{{ 'a' is in 'abc' }}{{ 2 is in xs }}"
      "{{ n is sameas none }}{{ t is sameas true }}{{ xs is eq [1, 2, 3] }}{{ 2 is ne 2 }}{{ 3 is ge 3 }}{{ 2 is le(1) }}",
      "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'aB' is lower }}{{ '1' is lower }}{{ 'x'|safe is escaped }}{{ range is callable }}",
      "{{ 'x' if n is none }}{{ n is not none }}{{ xs is not string }}{{ not xs is string }}{{ d.items is callable }}",
      "{{ z is iterable }}{{ z is sequence }}{{ d.keys() is sequence }}{{ xs|select is iterable }}{{ true is number }}{{ true is integer }}",
  });
}

TEST_F(Templates, StringAndDictMethods) {
  check({
      "{{ 'a,b,,c'.split(',') }}|{{ '  a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'a,b'.split(',', maxsplit=1) }}",
      "{{ '  a b  c '.split(none, 1) }}|{{ '  a b  '.rsplit(none, 1) }}|{{ ''.split() }}|{{ ''.split(',') }}",
      "{{ 'xxhixx'.strip('x') }}|{{ 'xxhixx'.lstrip('x') }}|{{ 'xxhixx'.rstrip('x') }}|{{ ' \\t\\n hi \\u3000'.strip() }}|{{ 'abc'.strip('ca') }}",
      "{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ 'Hello'.startswith('') }}{{ 'lo'.endswith('Hello') }}",
      "{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ s.find('w') }} {{ 'abcabc'.count('bc') }} {{ 'abc'.count('') }}",
      "{{ 'Hello'.lower() }} {{ 'hello'.upper() }} {{ 'they\\'re bob'.title() }} {{ 'x1y 2z'.title() }} {{ 'hELLO'.capitalize() }}",
      "{{ 'straße ŉ ǰ ﬁ'|upper }} {{ 'ΟΔΟΣ ΑΣ. Σ ΑΣ\\'Β İ'|lower }} {{ 'ǆemal ﬁsh ǅ'.title() }} {{ 'ǆ-élan (ñu'|title }} {{ 'ÉCOLE'|capitalize }}",
      "{{ 'aXbXc'.replace('X', '-') }} {{ 'ab'.replace('', '.') }} {{ ', '.join(['a', 'b']) }} {{ '-'.join('abc') }}",
      "{{ '{} and {}'.format(1, 'x') }} {{ '{a}!'.format(a=2) }} {{ '{0}-{0}'.format('a') }} {{ '{{}}'.format() }}",
      "{{ d.get('a') }} {{ d.get('z', 9) }} {{ d.get('z') }} {{ d.items()|list }} {{ d['items'] }} {{ xs.count(2) }} {{ xs.index(3) }}",
      "{{ s|length }} {{ s[1] }} {{ s[-2:] }} {{ s[::-1] }} {{ s[1:8:2] }} {{ xs[-1] }} {{ xs[1:2] }} {{ xs[::2] }} {{ xs[5:] }} {{ xs[-10:2] }}",
      "{{ msgs[2].tool_calls[0].function.arguments }} {{ msgs[0]['content'] }} {{ msgs[-1].content|upper }}",
      "{{ '{}{1}'.format(1, 2) }}",
      "{{ ', '.join([1]) }}",
      "{{ 'a'.split('') }}",
  });
}

TEST_F(Templates, NamespacesMacrosAndSet) {
  check({
      "{% set ns = namespace(a=1, found=false) %}{% for i in xs %}{% set ns.a = ns.a + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}"
      "{% endfor %}{{ ns.a }} {{ ns.found }} {{ ns }}",
      "{% set ns = namespace() %}{% set ns.items = [1] %}{{ ns.items }}{% set ns2 = namespace(d) %}{{ ns2.b }}",
      "{% macro m(a, b=2) %}<{{ a }}|{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=5, a=0) }}{{ m() }}{{ m }}",
      "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
      "{% macro f(x) %}{{ x }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1, 2, y=3) }}",
      "{% macro m(a, b=a + 1) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 5) }}",
      "{% set y = 1 %}{% macro m() %}{{ y }}{% set y = 2 %}{{ y }}{% endmacro %}{{ m() }}{{ y }}{% set y = 3 %}{{ m() }}",
      "{% macro m() %}{{ later }}{% endmacro %}{% set later = 'seen at call time' %}{{ m() }}",
      "{% if true %}{% set z = 1 %}{% endif %}{{ z }} {% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c, e = 'xy' %}{{ c }}{{ e }}",
      "{% set x %}block {{ 1 }}{% endset %}[{{ x }}]{% set y | upper | replace('U', 'u') %}up{% endset %}{{ y }}",
      "{{ dict(a=1, b='x') }} {{ dict(d, c=3) }} {{ dict() }} {{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5)[2] }}",
      "{% generation %}generated {{ 1 }}{% endgeneration %}",
      "{% print 1, 'a' %}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
      "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=1) }}",
      "{% set x = 5 %}{% set x.y = 1 %}",
      "{% set a, b = [1] %}",
      "{{ range(100001)|length }}",
  });
}

TEST_F(Templates, UndefinedAndFailures) {
  check({
      "{{ undefined_var }}|{{ d.missing }}|{{ d['missing'] }}|{{ xs[10] }}|{{ 'abc'[5] }}|{{ n.attr }}|{{ xs[10] is defined }}",
      "{{ z|length }} {{ z|list }} {{ z ~ 'a' }} {{ z is iterable }} {{ z == z }} {{ z|default('d') }} {{ z|string }}|{{ z|first }}|{{ z|items|list }}",
      "{{ d.update }}|{{ d.update is defined }}|{{ xs.append }}|",
      "{% if messages is defined %}x{% endif %}{{ xs[1] if xs|length > 5 }}|",
      "{{ z + 1 }}", "{{ z.y }}", "{{ z['y'] }}", "{{ z() }}", "{{ -z }}", "{{ z < 1 }}", "{{ z|int }}",
      "{{ xs.append(4) }}", "{{ d.pop('a') }}", "{{ d.update({}) }}",
      "{{ raise_exception('boom: ' ~ x) }}",
      "{% if t %}{{ raise_exception('roles must alternate') }}{% endif %}",
      "{{ x() }}", "{{ 'abc'.nope() }}",
      "{{ s|nosuchfilter }}", "{{ x is nosuchtest }}",
      // jinja2 lets unknown names in an if or an inline if fail only when they run
      "{% if x is nosuchtest %}a{% endif %}b", "{% if false %}{{ x|nosuch }}{% endif %}b", "{{ x|nosuch if false }}b",
      "{% if false %}{% for i in xs %}{{ i|nosuch }}{% endfor %}{% endif %}b", "{% if false %}{% for i in xs|nosuch %}{% endfor %}{% endif %}b",
      "{% if false %}{% for i in [] %}{% else %}{{ i|nosuch }}{% endfor %}{% endif %}b",
      "{% if xs %}{% elif %}{% endif %}", "{% for %}", "{{ 'unterminated }}", "{% if t %}no end", "{{ (1 }}", "{{ }}",
      "{% endif %}", "{% break %}", "{% macro m(a=1, b) %}{% endmacro %}", "{% unknowntag %}",
  });
}

// Templates in the style of other models' (LLaMA-2's from Meta, ChatML with tools), since the
// LLaMA-2 npm package ships no chat template.
TEST_F(Templates, OtherModelStyles) {
  const std::string llama2 =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
      "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
      "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
      "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
      "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}"
      "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
      "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  const std::string chatml_tools =
      "{%- if tools %}<|im_start|>system\n{%- for tool in tools %}\n{{ tool | tojson(indent=2) }}{% endfor %}<|im_end|>\n{% endif %}"
      "{%- for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content is string %}{{ m.content }}{% else %}"
      "{% for part in m.content %}{{ part.text }}{% endfor %}{% endif %}{% for call in m.tool_calls | default([]) %}"
      "<tool_call>{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}</tool_call>{% endfor %}"
      "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
      "{{ documents is none }}{{ tools is none }}";
  const Json conversation = Json::parse(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "},
    {"role": "assistant", "content": "Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": [2]}}}]},
    {"role": "user", "content": [{"type": "text", "text": "again"}]}])");
  const Json tools = Json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"z": 1, "a": 2}}}])");
  std::vector<Json> cases;
  for (bool prompt : {false, true}) {
    cases.push_back(chat_case(llama2, conversation, prompt, "<s>", "</s>"));
    cases.push_back(chat_case(llama2, Json::array({conversation[1], conversation[2]}), prompt, "<s>", "</s>"));
    cases.push_back(chat_case(chatml_tools, conversation, prompt, "", "<|im_end|>"));
    cases.push_back(chat_case(chatml_tools, conversation, prompt, "", "<|im_end|>", {{"tools", tools}, {"documents", Json::array()}}));
  }
  EXPECT_EQ(expect_same_as_reference(cases), cases.size());
}

}  // namespace
}  // namespace loom::chat::testing
