"""Griffe extension: render Keras-style docstrings well in the API reference.

Keras docstrings (the style this package follows) put doctest examples flush
with the text under `Example:` and list `Call arguments:` as `name: text` lines.
Markdown reads the former as nested block quotes (`>>>`) and the latter as one
run-on paragraph. Before the docstrings are parsed, this extension wraps every
doctest block in a `pycon` code fence and turns the `Call arguments:` entries
into a bullet list. Nothing else in a docstring changes.
"""

import re

import griffe

_FENCE = re.compile(r"^\s*(```|~~~)")
_SECTION = re.compile(r"^(\s*)Call arguments:\s*$")
_ENTRY = re.compile(r"^(\s*)([\w*]+): (.*)$")


def _indent(line):
    return len(line) - len(line.lstrip())


def fence_doctests(lines):
    """Wraps each doctest block (prompts plus expected output) in a pycon fence."""
    out, i, in_fence = [], 0, False
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
        # Indented examples sit in a Google "Examples:" section, which Griffe
        # already renders; only flush (Keras-style) ones need a fence.
        if in_fence or not line.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        block = []
        # A doctest block ends at a blank line (doctest's own rule).
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        out.extend(["```pycon", *block, "```"])
    return out


def list_call_arguments(lines):
    """Turns `name: text` entries under `Call arguments:` into a bullet list."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        section = _SECTION.match(line)
        if not section:
            continue
        base = len(section.group(1))
        item_indent = None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            entry = _ENTRY.match(lines[i])
            if entry and item_indent is None:
                item_indent = len(entry.group(1))
            if entry and len(entry.group(1)) == item_indent:
                pad = entry.group(1)
                out.append(f"{pad}- `{entry.group(2)}`: {entry.group(3)}")
            else:
                out.append(lines[i])
            i += 1
    return out


class KerasStyleDocstrings(griffe.Extension):
    """Rewrites doctest blocks and `Call arguments:` before Griffe parses them."""

    def on_instance(self, *, node, obj, agent, **kwargs):
        if obj.docstring is None:
            return
        lines = obj.docstring.value.split("\n")
        obj.docstring.value = "\n".join(list_call_arguments(fence_doctests(lines)))
