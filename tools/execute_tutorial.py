"""Re-executes the tutorial notebook in place, for committing it with fresh outputs.

    VSGAN_DATA=../shared/data python tools/execute_tutorial.py [--budget small]

Runs every cell top to bottom (nbclient, the current interpreter's kernel) on the given
`TUTORIAL_BUDGET` (the committed copy uses the default, `small`), then drops TensorFlow's native
start-up log lines (absl / CUDA probes) from the stderr outputs. tests/test_notebook.py checks
the committed metrics against a re-run.
"""

import argparse
import os
import re
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "virtual_staining_tutorial.ipynb"
NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |To enable the following)")


def main(budget: str, path: Path = NOTEBOOK) -> None:
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "TUTORIAL_BUDGET": budget}
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=env)
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                out.text = "".join(x for x in out.text.splitlines(True) if not NOISE.match(x))
                if not out.text.strip():
                    continue
            kept.append(out)
        if cell.cell_type == "code":
            cell.outputs = kept
    nbformat.write(nb, path)
    size = path.stat().st_size / 1e6
    print(f"executed {path.name} in {time.perf_counter() - start:.0f} s; {size:.2f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", default="small", help="TUTORIAL_BUDGET (small, tiny or EPOCHSxSTEPS)"
    )
    main(parser.parse_args().budget)
