"""The documentation builds offline with warnings as errors, with every generated page.

Skipped only where mkdocs is not installed (`pip install -e ".[docs]"`); CI installs it.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("mkdocs", reason='mkdocs not installed: pip install -e ".[docs]"')
pytest.importorskip("mkdocstrings", reason='mkdocstrings not installed: pip install -e ".[docs]"')

GUIDE = ["install", "tutorial", "guide/train", "guide/stain", "guide/export", "guide/napari"]
GUIDE += ["guide/cluster"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "site"
    # A dead proxy: any attempt to reach the network during the build fails it.
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    assert "WARNING" not in run.stderr, run.stderr[-6000:]
    return out


def test_user_guide_pages_are_built(site):
    for page in ["index", *GUIDE]:
        assert (site / f"{page}.html").is_file(), page
    index = (site / "index.html").read_text()
    assert 'href="guide/train.html"' in index


def test_model_cards_are_included_with_their_images(site):
    cards = sorted(p.stem for p in (REPO / "weights").glob("*.md"))
    assert "isl-nuclei" in cards
    for card in cards:
        html = (site / "models" / f"{card}.html").read_text()
        title = (REPO / "weights" / f"{card}.md").read_text().splitlines()[0].lstrip("# ")
        assert title.split(":")[0] in html
        for image in re.findall(r'<img[^>]+src="([^"]+)"', html):
            assert (site / "models" / image).is_file(), image


def test_cli_page_renders_every_subcommand_help(site):
    from vsgan.cli import build_parser

    parser = build_parser()
    html = (site / "cli.html").read_text()
    subcommands = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    assert "usage: vsgan [-h] COMMAND" in html
    for name, sub in subcommands.choices.items():
        assert f"usage: vsgan {name}" in html, name
        for action in sub._actions:  # every option of every subcommand is on the page
            for flag in action.option_strings:
                assert flag in html, (name, flag)


def test_api_reference_has_a_page_per_public_module_from_the_docstrings(site):
    modules = [
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in (REPO / "vsgan").rglob("*.py")
        if not any(part.startswith("_") for part in p.relative_to(REPO / "vsgan").parts)
        and "weights" not in p.parts
    ]
    assert "vsgan.inference.stain" in modules
    for module in modules:
        assert (site / "api" / f"{module}.html").is_file(), module
    stain = (site / "api" / "vsgan.inference.stain.html").read_text()
    assert "Monte-Carlo-dropout passes per tile" in stain  # the docstring of stain(samples=)
    assert "&gt;&gt;&gt;" in stain  # doctests render as examples (code), not as quotes


def test_site_loads_no_script_or_style_from_the_network(site):
    for page in site.rglob("*.html"):
        html = page.read_text()
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html), page


def test_readme_links_to_the_docs_and_the_tutorial():
    readme = (REPO / "README.md").read_text()
    assert "](docs/index.md)" in readme
    assert "](examples/virtual_staining_tutorial.ipynb)" in readme
    assert "mkdocs build --strict" in readme
