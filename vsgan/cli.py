"""The `vsgan` command line: train, predict, evaluate, export, convert, models, demo.

Each subcommand only parses arguments and calls the library. Errors a user can fix end
with one line on stderr and exit status 2 (set `VSGAN_DEBUG=1` for the traceback);
outputs are never overwritten without `--overwrite`, and `predict` reads and checks
every input before it writes anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vsgan.errors import VsganError


def _model(name: str):
    from vsgan.zoo import load_pretrained

    return load_pretrained(name)


def _fresh_output(path: Path, overwrite: bool, create: bool = True) -> Path:
    if path.exists() and any(path.iterdir() if path.is_dir() else [path]) and not overwrite:
        raise VsganError(f"{path} exists and is not empty: pass --overwrite or choose another -o.")
    if path.exists() and not path.is_dir():
        raise VsganError(f"{path} is a file: give a folder for the outputs.")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _precision_flag(parser) -> None:
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        help="compute precision of the generator (default: bfloat16 where the CPU has "
        "AVX512-BF16 or AMX and on Ampere or newer GPUs, float32 elsewhere)",
    )


# ------------------------------------------------------------------------------------ train
def cmd_train(args) -> None:
    from vsgan.training.recipes import get_recipe, train
    from vsgan.zoo import preset_recipe

    recipe = get_recipe(args.config) if args.config else preset_recipe(args.preset)
    recipe = recipe.replace(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        seed=args.seed,
        precision=args.precision,
        deterministic=args.deterministic or None,
    )
    train(recipe, args.out, args.data, overwrite=args.overwrite, verbose=2 if args.quiet else 1)
    print(f"trained model: {Path(args.out) / 'model.keras'}")


# ---------------------------------------------------------------------------------- predict
def cmd_predict(args) -> None:
    from tqdm.auto import tqdm

    from vsgan.evaluation.figures import panel
    from vsgan.inference.stain import read_fields, stain
    from vsgan.io.writers import write_stain

    model = _model(args.model)
    _fresh_output(Path(args.output), args.overwrite, create=False)
    fields = read_fields(args.inputs, model)  # every input checked before anything is written
    out = _fresh_output(Path(args.output), args.overwrite)
    for name, raw in tqdm(fields, desc="fields", disable=len(fields) < 2):
        result = stain(
            model,
            raw,
            samples=args.samples,
            tile_size=args.tile_size,
            overlap=args.overlap,
            tta=args.tta,
            progress=not args.quiet,
            precision=args.precision,
        )
        written = write_stain(out / name, result, model.output_channels, args.format, True)
        if args.figure:
            panel(
                raw,
                result.mean,
                result.std,
                None,
                out / f"{name}_figure.png",
                channel_names=model.output_channels,
            )
        print(f"{name}: {written}")


# --------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> None:
    from vsgan.evaluation.report import evaluate_dataset, print_table

    model = _model(args.model)
    out = _fresh_output(Path(args.output), args.overwrite)
    rows = evaluate_dataset(
        model,
        args.dataset,
        data_dir=args.data,
        split=args.split,
        out_dir=out,
        samples=args.samples,
        tile_size=args.tile_size,
        figures=not args.no_figures,
        precision=args.precision,
    )
    print_table(rows)
    print(f"metrics: {out / 'metrics.csv'} and {out / 'metrics.json'}")


# ----------------------------------------------------------------------- export / convert
def cmd_export(args) -> None:
    model = _model(args.model)
    from vsgan.inference import export

    if args.format == "saved_model":
        path = export.export_generator(model, args.output, overwrite=args.overwrite)
    else:
        path = export.export_onnx(model, args.output, overwrite=args.overwrite)
    print(f"exported: {path}")


def cmd_convert(args) -> None:
    from vsgan.zoo.pix2pixhd import convert_checkpoint

    config = {
        k: getattr(args, k)
        for k in ("in_channels", "out_channels", "ngf", "n_downsample", "n_blocks", "dropout")
        if getattr(args, k) is not None
    }
    path = convert_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite, **config)
    print(f"converted: {path}")


# ----------------------------------------------------------------------------------- models
def cmd_models(args) -> None:
    from vsgan.zoo.presets import list_pretrained

    presets = list_pretrained()
    if args.json:
        print(json.dumps(presets, indent=2, default=str))
        return
    print(f"{'name':<12} {'inputs -> outputs':<42} {'held-out metrics'}")
    for name, card in presets.items():
        ins, outs = card.get("input_channels", []), card.get("output_channels", [])
        io = f"{len(ins)} ({ins[0]}..) -> {', '.join(outs)}" if ins else ""
        metrics = card.get("metrics", {}).get("test", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k in _CARD_METRICS)
        print(f"{name:<12} {io:<42} {shown or card.get('source', '')}")


_CARD_METRICS = ("pearson_r", "ssim", "psnr", "f1@0.5")


# ------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> None:
    from vsgan.zoo.demo import run_demo

    run_demo(
        data_dir=args.data, out_dir=args.output, samples=args.samples, overwrite=args.overwrite
    )


# ----------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsgan",
        description="Virtual staining of label-free microscopy with Pix2PixHD GANs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a preset recipe or a config file; resumes if cut")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--preset", help="a preset's recipe (isl-nuclei, jurkat-dna, a549; NAME-l1: its baseline)"
    )
    src.add_argument(
        "--config", help="a recipe JSON/YAML file (keys of vsgan.training.recipes.Recipe)"
    )
    p.add_argument("--data", help="dataset folder or store (default: $VSGAN_DATA)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, logs, history")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int, dest="steps_per_epoch")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--patch-size", type=int, dest="patch_size")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"])
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-reproducible (also when killed and resumed); slower on GPU",
    )
    p.add_argument("--overwrite", action="store_true", help="restart a finished run")
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="stain files, folders or zarr stores")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument("inputs", nargs="+", help="images (TIFF, PNG, NPY, HDF5), folders or .zarr")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--samples", type=int, default=1, help="Monte-Carlo dropout samples")
    p.add_argument("--tile-size", type=int, dest="tile_size")
    p.add_argument("--overlap", type=int)
    p.add_argument("--tta", action="store_true", help="average flips and rotations")
    p.add_argument("--format", choices=["tiff", "zarr"], default="tiff")
    p.add_argument("--figure", action="store_true", help="also write a PNG panel per field")
    _precision_flag(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a model on a dataset's held-out split")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument("dataset", help="isl-condition-b, mlcp-jurkat, or a PairedDataset JSON spec")
    p.add_argument("--data", help="dataset folder (default: $VSGAN_DATA)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("-o", "--output", required=True, help="folder for CSV, JSON and figures")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--tile-size", type=int, dest="tile_size")
    p.add_argument("--no-figures", action="store_true", dest="no_figures")
    _precision_flag(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export the generator for serving")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument("output", help="SavedModel folder or .onnx file")
    p.add_argument("--format", choices=["saved_model", "onnx"], default="saved_model")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert a pix2pixHD PyTorch checkpoint to .keras")
    p.add_argument("checkpoint", help="latest_net_G.pth (read without torch)")
    p.add_argument("output", help="the .keras file to write")
    for flag in ("in-channels", "out-channels", "ngf", "n-downsample", "n-blocks"):
        p.add_argument(f"--{flag}", type=int, dest=flag.replace("-", "_"))
    p.add_argument("--dropout", type=float)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("models", help="list the pretrained presets")
    p.add_argument("--json", action="store_true", help="full cards as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="stain the held-out ISL quadrant and score it")
    p.add_argument("--data", help="folder holding isl-condition-b (default: $VSGAN_DATA)")
    p.add_argument("-o", "--output", default=None, help="output folder (default: a new one)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (VsganError, OSError, MemoryError) as error:  # OSError: disk full, permissions
        if os.environ.get("VSGAN_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, MemoryError):
            message = f"out of memory ({message}). Fix: use a smaller --tile-size or image."
        print(f"vsgan {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vsgan {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
