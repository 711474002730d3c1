"""The house rules, checked: layers import downward only; `import vsgan` stays light."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vsgan"

# Lower number = lower layer. A module may import its own layer and any lower one.
LAYERS = {
    "errors": 0,
    "_quiet": 0,
    "_lazy": 0,
    "io": 1,
    "data": 2,
    "datasets": 2,
    "models": 3,
    "inference": 4,
    "evaluation": 5,
    "training": 6,  # a run validates and calibrates with `stain` and the evaluation metrics
    "zoo": 7,
    "napari": 8,
    "cli": 9,
}
# Deliberate exceptions, each with its reason.
UPWARD = {
    # keras-hub's `Task.from_preset`: a classmethod that looks the preset up late.
    ("models", "zoo"),
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def vsgan_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vsgan.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vsgan":
                found |= {f"vsgan.{a.name}" for a in node.names}
            elif node.module.startswith("vsgan."):
                found.add(node.module)
    return found


def test_layers_import_downward_only():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = layer_of(module)
        if own not in LAYERS:
            continue  # vsgan/__init__.py re-exports lazily, vsgan/weights holds data
        for target in vsgan_imports(path):
            other = layer_of(target)
            if other not in LAYERS or LAYERS[other] <= LAYERS[own]:
                continue
            if (own, other) not in UPWARD:
                violations.append(f"{module} imports {target}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_io_and_data_helpers_are_not_repeated():
    # One sha256, one atomic writer: nothing outside vsgan/io hashes files or makes temporaries.
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "io":
            continue
        text = path.read_text()
        for needle in ("hashlib.sha256()", "tempfile.mkstemp", "glob_escape"):
            if needle in text:
                offenders.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert not offenders, offenders


def test_import_vsgan_and_the_cli_help_do_not_load_tensorflow():
    code = (
        "import sys, vsgan, vsgan.cli, vsgan.zoo.presets as p\n"
        "p.list_pretrained()\n"
        "vsgan.cli.build_parser().format_help()\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cli_on_a_cpu_machine_prints_no_tensorflow_noise(tmp_path):
    # A command that loads TensorFlow and builds a model still writes nothing alarming.
    code = (
        "import vsgan\n"
        "m = vsgan.Pix2PixHD(1, 1, ngf=4, n_downsample=1, n_blocks=1, ndf=4, num_d=1)\n"
        "import numpy as np\n"
        "vsgan.stain(m, np.zeros((8, 8)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for noise in ("cuInit", "cuda drivers", "cpu_feature_guard", "absl::InitializeLog"):
        assert noise not in out.stderr, out.stderr


def test_every_package_is_listed_for_the_wheel():
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(PACKAGE.parent).parts)
        for p in PACKAGE.rglob("__init__.py")
        if not p.parent.is_symlink() and "weights" not in p.parts
    }
    assert found <= listed, f"add to setup.cfg packages: {sorted(found - listed)}"
    assert "vsgan.weights" in listed  # the presets, mapped from the top-level weights/
