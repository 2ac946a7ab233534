#!/usr/bin/env python3
"""The reference for loom/chat: renders chat-template cases with Python's jinja2, set up as
transformers sets it up (ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
loopcontrols extension and the {% generation %} tag, its tojson, raise_exception and strftime_now).

stdin: a JSON list of cases, each
  {"template": str, "context": {...}}                       render(**context), or
  {"template": str, "chat": {"messages": [...], "add_generation_prompt": bool,
                             "bos_token": str, "eos_token": str, "extra": {...}}}
                                                            as apply_chat_template(tokenize=False)
stdout: a JSON list with one entry per case, {"output": str} or {"error": "Type: message"}.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    """transformers' {% generation %} tag, which renders its body (the tracking is off here)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(format):
    return datetime.now().strftime(format)


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, case):
    template = env.from_string(case["template"])
    if "chat" not in case:
        return template.render(**case["context"])
    chat = case["chat"]
    extra = dict(chat.get("extra", {}))
    kwargs = {"bos_token": chat["bos_token"], "eos_token": chat["eos_token"], **extra}
    kwargs.pop("tools", None)
    kwargs.pop("documents", None)
    return template.render(messages=chat["messages"], tools=extra.get("tools"), documents=extra.get("documents"),
                           add_generation_prompt=chat["add_generation_prompt"], **kwargs)


def main():
    env = make_environment()
    results = []
    for case in json.load(sys.stdin):
        try:
            results.append({"output": render(env, case)})
        except Exception as e:  # every failure is an answer: Loom must fail too
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
