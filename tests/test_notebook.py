"""The tutorial notebook runs top to bottom, and its committed outputs came from the current code.

`examples/virtual_staining_tutorial.ipynb` is committed with its outputs (run on the default
`small` budget). Here it is re-executed on the `tiny` budget (`TUTORIAL_BUDGET=tiny`: 2 epochs x
5 steps): it must run without an error, and the metrics its cells tagged `metrics` print for the
pretrained model (which do not depend on the training budget) must match those of the committed
copy. Skipped only where nbclient is not installed (the `test` extra installs it).
"""

import json
import os
import re
import sys

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat", reason='nbformat missing: pip install -e ".[test]"')
nbclient = pytest.importorskip("nbclient", reason='nbclient missing: pip install -e ".[test]"')

NOTEBOOK = REPO / "examples" / "virtual_staining_tutorial.ipynb"
MAX_BYTES = 2_500_000
ROW = re.compile(r"^(\S+)((?:\s+-?\d+\.\d+)+)\s*$")  # "psnr    19.2721   19.3469"
# Absolute tolerance per metric for the one-pass column; Monte-Carlo columns get 3x.
TOLERANCE = {"psnr": 0.2, "hf_ratio": 0.1, "n_pred": 2.0, "n_target": 2.0}
DEFAULT_TOLERANCE = 0.02


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _metrics(nb) -> tuple[list[str], dict[tuple[int, str], list[float]]]:
    """The `data:`/`model:` lines and {(cell, metric): values} of the cells tagged metrics."""
    context, values = [], {}
    tagged = [c for c in nb.cells if "metrics" in c.metadata.get("tags", [])]
    assert len(tagged) >= 2, "the notebook lost its cells tagged 'metrics'"
    for k, cell in enumerate(tagged):
        for line in _text(cell).splitlines():
            if line.startswith(("data:", "model:")):
                context.append(line)
            elif match := ROW.match(line):
                values[(k, match[1])] = [float(v) for v in match[2].split()]
    return context, values


@pytest.fixture(scope="module")
def committed():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    where = tmp_path_factory.mktemp("notebook")  # the notebook writes nothing; if it did, here
    # A kernel of this very interpreter, whatever "python3" kernels the machine has.
    spec = where / "kernels" / "vsgan-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "vsgan test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    env = {**os.environ, "TUTORIAL_BUDGET": "tiny"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(where), saved]))
    try:
        client = nbclient.NotebookClient(
            nb, timeout=900, kernel_name="vsgan-test", resources={"metadata": {"path": str(where)}}
        )
        client.execute(env=env)  # raises CellExecutionError naming the failing cell
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH")
        else:
            os.environ["JUPYTER_PATH"] = saved
    return nb


def test_committed_notebook_keeps_its_outputs_and_is_small(committed):
    assert NOTEBOOK.stat().st_size < MAX_BYTES
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "commit the notebook executed, in order"
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), "the committed copy was not run top to bottom"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 10  # data, training, stains, samples, metrics, nuclei, GAN vs L1
    assert "training budget: 4 epochs x 25 steps" in _text(code[0])  # the default budget


def test_notebook_runs_top_to_bottom_on_a_tiny_budget(rerun):
    code = [c for c in rerun.cells if c.cell_type == "code"]
    assert "training budget: 2 epochs x 5 steps" in _text(code[0])
    assert all(c.execution_count for c in code)
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 10


def test_committed_metrics_match_a_rerun_of_the_current_code(committed, rerun):
    context, expected = _metrics(committed)
    rerun_context, got = _metrics(rerun)
    if rerun_context != context:
        pytest.skip(f"the committed copy scored {context[0]!r}, this run {rerun_context[0]!r}")
    assert set(got) == set(expected)
    assert {name for _, name in expected} >= {"psnr", "ssim", "pearson_r", "dice", "f1@0.5"}
    for key, values in expected.items():
        tol = TOLERANCE.get(key[1], DEFAULT_TOLERANCE)
        for column, (want, have) in enumerate(zip(values, got[key])):
            limit = tol * (1 if column == 0 else 3)
            assert abs(have - want) <= limit, f"{key[1]} column {column}: {have} vs {want}"
