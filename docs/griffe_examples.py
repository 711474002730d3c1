"""griffe extension for the API reference: vsgan's doctests as examples sections.

vsgan's docstrings head their doctests `Example:` and do not indent them (so that
`python -m pytest --doctest-modules` reads them as written). Google-style parsers want an
indented `Examples:` section; otherwise the `>>>` lines render as nested quotes and their
outputs as broken links. This rewrites the section before the docstring is parsed; the source
is unchanged.
"""

from __future__ import annotations

import re

import griffe

_HEADING = re.compile(r"^Examples?:\s*$")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")  # the next Google-style section heading


def examples_section(text: str) -> str:
    """`text` with its unindented `Example:` block turned into an indented `Examples:` section."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if _HEADING.match(line):
            inside = True
            out.append("Examples:")
            continue
        if inside and _SECTION.match(line):
            inside = False
        out.append(f"    {line}" if inside and line.strip() else line)
    return "\n".join(out)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and "Example" in obj.docstring.value:
            obj.docstring.value = examples_section(obj.docstring.value)
