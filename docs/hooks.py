"""mkdocs hooks: the generated pages of the vsgan documentation.

- **API reference**: one page per public module of the `vsgan` package (found by walking the
  source tree, so new modules appear without editing the nav), rendered by mkdocstrings.
- **Model cards**: every `weights/<preset>.md`, with the images it shows.
- **Command line**: `vsgan --help` and every subcommand's `--help`, from `vsgan.cli.build_parser`
  (which imports no TensorFlow).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vsgan"
WEIGHTS = ROOT / "weights"
sys.path.insert(0, str(ROOT))  # document (and import the CLI of) this checkout
SKIP = {"weights"}  # the preset folder (a link to ../weights), not a module
_PACKAGES: set[str] = set()


def _modules() -> list[str]:
    """Dotted names of the public modules of vsgan, packages before their modules."""
    names = []
    _PACKAGES.clear()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        if any(p.startswith("_") or p in SKIP for p in parts[1:]):
            continue
        names.append(".".join(parts))
        if package:
            _PACKAGES.add(".".join(parts))
    return sorted(names, key=lambda n: n.split("."))


def _cards() -> list[Path]:
    return sorted(WEIGHTS.glob("*.md"))


def _card_title(path: Path) -> str:
    return path.stem


def on_config(config):
    for item in config["nav"]:
        if "API reference" in item:
            item["API reference"] = [{m: f"api/{m}.md"} for m in _modules()]
        if "Model cards" in item:
            item["Model cards"] = [{_card_title(c): f"models/{c.name}"} for c in _cards()]
    return config


def _cli_page() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix it for a stable page
    from vsgan.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    lines = [
        "# Command line",
        "",
        "Every subcommand prints its help with `--help`. Errors a user can fix end with one line",
        "on stderr and exit status 2 (`VSGAN_DEBUG=1` shows the traceback); outputs are never",
        "overwritten without `--overwrite`. MODEL is a preset name (`vsgan models`) or a `.keras`",
        "file. This page is generated from the parser itself, so it matches the installed version.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, sub in subparsers.choices.items():
        lines += ["", f"## vsgan {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def on_files(files, config):
    modules = _modules()
    for module in modules:
        content = f"# {module}\n\n::: {module}\n"
        if module in _PACKAGES:
            # A package page: its docstring and links to its modules (whose pages document
            # the members it re-exports).
            children = [m for m in modules if m.rpartition(".")[0] == module]
            content = f"# {module}\n\n::: {module}\n    options:\n      members: false\n"
            if children:
                content += "\n## Modules\n\n" + "".join(f"- [{m}]({m}.md)\n" for m in children)
        files.append(File.generated(config, f"api/{module}.md", content=content))
    for card in _cards():
        files.append(File.generated(config, f"models/{card.name}", abs_src_path=str(card)))
        text = card.read_text()
        for image in sorted(set(re.findall(r"\]\(([^)\s]+\.png)\)", text))):
            files.append(
                File.generated(config, f"models/{image}", abs_src_path=str(WEIGHTS / image))
            )
    files.append(File.generated(config, "cli.md", content=_cli_page()))
    return files
