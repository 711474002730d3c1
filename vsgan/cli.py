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


def _model(name: str, archive: str | None = None):
    from vsgan.zoo import load_pretrained

    if archive is None:
        return load_pretrained(name)
    return load_pretrained(name, archive=archive)  # archive presets (a549) only


def _fresh_output(path: Path, overwrite: bool, create: bool = True) -> Path:
    # `.tmp-*` are vsgan's own leftovers of a killed write: they never make a folder "used".
    used = [p for p in (path.iterdir() if path.is_dir() else [path]) if p.name[:5] != ".tmp-"]
    if path.exists() and used and not overwrite:
        raise VsganError(f"{path} exists and is not empty: pass --overwrite or choose another -o.")
    if path.exists() and not path.is_dir():
        raise VsganError(f"{path} is a file: give a folder for the outputs.")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _separate_output(output: Path, inputs: list[str]) -> None:
    """Refuses an output folder that is, or holds, an input folder (outputs would be re-read
    as inputs, or mixed with them)."""
    out = output.resolve()
    for item in map(Path, inputs):
        where = item.resolve()
        folder = where if where.is_dir() and where.suffix != ".zarr" else where.parent
        if out == folder or folder.is_relative_to(out):
            raise VsganError(
                f"-o {output} is (or contains) the input folder {folder}: the predictions "
                "would be read back as inputs by the next run. Fix: choose an output folder "
                "outside the inputs, e.g. a sibling folder."
            )


def _precision_flag(parser) -> None:
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        help="compute precision of the generator (default: bfloat16 where the CPU has "
        "AVX512-BF16 or AMX and on Ampere or newer GPUs, float32 elsewhere)",
    )


# ------------------------------------------------------------------------------------ train
_ARCHITECTURE = ("ngf", "n_downsample", "n_blocks", "ndf", "num_d", "dropout")


def _train_recipe(args):
    """The recipe `vsgan train` runs: a preset's, a config file's, or one's own data's."""
    import copy

    from vsgan.training.callbacks import parse_duration
    from vsgan.training.recipes import OWN_DATA_DEFAULTS, Recipe, get_recipe
    from vsgan.zoo import preset_recipe

    own = bool(args.inputs or args.targets)
    if args.preset and args.config:
        raise VsganError("give --preset or --config, not both.")
    if own and args.preset:
        raise VsganError(
            "--preset trains on the preset's own dataset; --inputs/--targets name yours. Fix: "
            "leave out --preset, and add --from PRESET to start from its weights."
        )
    if own and not args.data:
        raise VsganError("--inputs/--targets need --data: the folder (or .zarr, .h5) of your data.")
    if not (own or args.preset or args.config):
        raise VsganError(
            "nothing to train on. Fix: give --data DIR --inputs PATTERN... --targets PATTERN... "
            "(your own data), --preset NAME or --config recipe.yaml."
        )
    if args.config:
        recipe = get_recipe(args.config)
    elif args.preset:
        recipe = preset_recipe(args.preset)
    else:
        recipe = Recipe(**copy.deepcopy(OWN_DATA_DEFAULTS))
    if own:
        if not (args.inputs and args.targets):
            raise VsganError("give both --inputs and --targets (file patterns or channel names).")
        dataset_args = {"inputs": list(args.inputs), "targets": list(args.targets)}
        if args.val_fraction is not None:
            dataset_args["val_fraction"] = args.val_fraction
        recipe = recipe.replace(dataset=str(args.data), dataset_args=dataset_args)
    model = {k: getattr(args, k) for k in _ARCHITECTURE if getattr(args, k) is not None}
    time_limit = parse_duration(args.time_limit) if args.time_limit else None
    epochs = args.epochs
    if time_limit and epochs is None:
        epochs = 1000  # an upper bound: the time budget plans the epochs
    return recipe.replace(
        model={**recipe.model, **model},
        epochs=epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        seed=args.seed,
        precision=args.precision,
        deterministic=args.deterministic or None,
        time_limit=time_limit,
        init_from=args.init_from,
        val_tile_size=args.val_tile_size,
    )


def cmd_train(args) -> None:
    recipe = _train_recipe(args)
    if args.print_config:
        print(json.dumps(recipe.get_config(), indent=2))
        return
    if not args.out:
        raise VsganError("--out is required: the run folder (checkpoints, logs, history).")
    from vsgan.training.recipes import is_own_data, train

    data = None if is_own_data(recipe.dataset) else args.data
    train(
        recipe,
        args.out,
        data,
        overwrite=args.overwrite,
        force_resume=args.force_resume,
        verbose=2 if args.quiet else 1,
        strategy=args.strategy,
    )
    out = Path(args.out)
    print(
        f"trained model: {out / 'model.keras'} (best epoch by field Pearson r: "
        f"{out / 'model_best.keras'})"
    )


# ---------------------------------------------------------------------------------- predict
def _predict_plate(args) -> None:
    from vsgan.inference.plate import parse_shard, predict_plate

    if args.format == "tiff":
        raise VsganError("an HCS plate in gives an OME-Zarr plate out: drop --format tiff.")
    shard = parse_shard(args.shard)
    done = predict_plate(
        _model(args.model, args.archive),
        args.inputs[0],
        args.output,
        shard=shard,
        samples=args.samples or 1,
        tile_size=args.tile_size,
        overlap=args.overlap,
        tta=args.tta,
        overwrite=args.overwrite,
        progress=not args.quiet,
        model_name=args.model,
    )
    left = f"{len(done['missing'])} position(s) of the plate still to stain"
    print(
        f"shard {shard[0]}/{shard[1]}: {len(done['written'])} position(s) stained, "
        f"{len(done['skipped'])} already complete; "
        + (left if done["missing"] else "plate complete")
        + f": {args.output}"
    )


def _predict_mosaics(args) -> None:
    from vsgan.inference.mosaic import stain_mosaic
    from vsgan.io.readers import field_stem, split_path

    if args.format == "tiff" or args.figure:
        raise VsganError("--mosaic writes OME-Zarr only: drop --format tiff and --figure.")
    model = _model(args.model, args.archive)
    out = _fresh_output(Path(args.output), args.overwrite)
    for source in args.inputs:
        path, inner = split_path(source)
        name = field_stem(path) + (f"_{inner.replace('/', '_')}" if inner else "")
        written = stain_mosaic(
            model,
            source,
            out / f"{name}.zarr",
            samples=args.samples or 1,
            tile_size=args.tile_size,
            overlap=args.overlap,
            tta=args.tta,
            overwrite=True,
            progress=not args.quiet,
            precision=args.precision,
        )
        print(f"{name}: {written}")


def cmd_predict(args) -> None:
    from tqdm.auto import tqdm

    from vsgan.io import ome_zarr

    if len(args.inputs) == 1 and ome_zarr.looks_like_zarr(args.inputs[0]):
        if ome_zarr.is_plate(args.inputs[0]):
            return _predict_plate(args)
    if args.shard:
        raise VsganError("--shard splits the fields of one HCS plate: give a plate .zarr input.")
    if args.mosaic:
        return _predict_mosaics(args)
    from vsgan.evaluation.figures import panel
    from vsgan.inference.stain import read_fields, stain
    from vsgan.io.readers import field_stem, pixel_size_for
    from vsgan.io.writers import write_stain

    model = _model(args.model, getattr(args, "archive", None))
    _separate_output(Path(args.output), args.inputs)
    _fresh_output(Path(args.output), args.overwrite, create=False)
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    # Every input is read and its channels matched by name before anything is written.
    fields = read_fields(args.inputs, model, channels=channels)
    out = _fresh_output(Path(args.output), args.overwrite)
    samples = args.samples
    if args.interval is not None:
        from vsgan.inference.calibration import interval_sampling

        samples = interval_sampling(model, args.interval, samples, args.tta)
    for name, raw in tqdm(fields, desc="fields", disable=len(fields) < 2):
        name = field_stem(name + ".tif")  # "field.ome" (from field.ome.tif) -> "field"
        result = stain(
            model,
            raw,
            samples=samples or 1,
            tile_size=args.tile_size,
            overlap=args.overlap,
            tta=args.tta,
            progress=not args.quiet,
            precision=args.precision,
        )
        bounds = None if args.interval is None else result.interval(args.interval)
        written = write_stain(
            out / name,
            result,
            model.output_channels,
            args.format or "tiff",
            True,
            interval=None if bounds is None else (args.interval, *bounds),
            pixel_size=pixel_size_for(name, args.inputs),
        )
        if args.figure:
            panel(
                raw,
                result.mean,
                result.std,
                None,
                out / f"{name}_figure.png",
                channel_names=model.output_channels,
                interval=bounds,
            )
        print(f"{name}: {written}")


# --------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> None:
    from vsgan.evaluation.report import evaluate_dataset, print_table

    model = _model(args.model, getattr(args, "archive", None))
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
    from vsgan.inference import export

    fmt = args.format or _export_format(args.output)
    if fmt != "saved_model":  # before loading the model: a missing extra fails fast
        export.require_extra(fmt, f"vsgan export --format {fmt}")
    model = _model(args.model, args.archive)
    if fmt == "saved_model":
        path = export.export_generator(model, args.output, overwrite=args.overwrite)
    elif fmt == "onnx":
        path = export.export_onnx(model, args.output, overwrite=args.overwrite)
    else:
        from vsgan.inference.bioimageio import export_bioimageio
        from vsgan.zoo.packages import preset_package

        extra = preset_package(args.model, args.data) if _is_preset(args.model) else {}
        path = export_bioimageio(model, args.output, overwrite=args.overwrite, **extra)
    print(f"exported: {path}")


def _export_format(output: str) -> str:
    suffix = Path(output).suffix.lower()
    return {".onnx": "onnx", ".zip": "bioimageio"}.get(suffix, "saved_model")


def _is_preset(name: str) -> bool:
    from vsgan.zoo.presets import list_pretrained

    return name in list_pretrained()


def cmd_convert(args) -> None:
    from vsgan.zoo.pix2pixhd import convert_checkpoint

    config = {
        k: getattr(args, k)
        for k in ("in_channels", "out_channels", "ngf", "n_downsample", "n_blocks", "dropout")
        if getattr(args, k) is not None
    }
    if args.discriminator:
        config["discriminator"] = args.discriminator
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

    p = sub.add_parser(
        "train",
        help="train on your own data (--data --inputs --targets), a preset's recipe or a config",
        description="Train a model. Your own data: vsgan train --data DIR --inputs 'bf_*.tif' "
        "--targets dapi.tif --out RUN (fields are DIR's sub-folders, or DIR is one field, split "
        "by region). Running the same command again resumes a cut run.",
    )
    p.add_argument(
        "--preset", help="a preset's recipe (isl-nuclei, jurkat-dna, a549; NAME-l1: its baseline)"
    )
    p.add_argument(
        "--config", help="a recipe JSON/YAML file (keys of vsgan.training.recipes.Recipe)"
    )
    p.add_argument(
        "--data",
        help="your data: a folder of fields (sub-folders; or the folder is one field), an HCS "
        "plate.zarr or file.h5[::group]; with --preset: where its dataset lives "
        "(default: $VSGAN_DATA)",
    )
    p.add_argument(
        "--inputs",
        nargs="+",
        metavar="PATTERN",
        help="label-free channels: file patterns in each field folder ('bf_*.tif': one channel "
        "per file, natural order z2 < z10, named by the file stem), channel names of a zarr "
        "plate, or dataset names of an HDF5 file",
    )
    p.add_argument("--targets", nargs="+", metavar="PATTERN", help="stain channels, likewise")
    p.add_argument(
        "--val-fraction",
        type=float,
        dest="val_fraction",
        help="share of fields (or of one field's area) that validates (default 0.25)",
    )
    p.add_argument("--out", help="run folder: model.keras, model_best.keras, history.csv, logs")
    p.add_argument(
        "--from",
        dest="init_from",
        metavar="PRESET|MODEL.keras",
        help="fine-tune: start from a preset's or a model file's weights and normalisation "
        "(its channels must match the data's by name)",
    )
    p.add_argument("--epochs", type=int, help="epochs (half constant, half decaying)")
    p.add_argument("--steps-per-epoch", type=int, dest="steps_per_epoch")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--patch-size", type=int, dest="patch_size", help="training crop side")
    p.add_argument(
        "--time-limit",
        dest="time_limit",
        metavar="DURATION",
        help="e.g. 45m or 1h30m: stop at an epoch boundary within it, the learning-rate decay "
        "fitted into it (--epochs becomes an upper bound)",
    )
    arch = p.add_argument_group(
        "architecture (own-data defaults: ngf 16, n-downsample 3, n-blocks 4, ndf 16, num-d 2, "
        "dropout 0.2: a CPU run of under an hour)"
    )
    arch.add_argument("--ngf", type=int, help="generator filters at full resolution")
    arch.add_argument("--n-downsample", type=int, dest="n_downsample")
    arch.add_argument("--n-blocks", type=int, dest="n_blocks", help="residual blocks")
    arch.add_argument("--ndf", type=int, help="discriminator filters")
    arch.add_argument("--num-d", type=int, dest="num_d", help="discriminator scales")
    arch.add_argument("--dropout", type=float, help="residual dropout (Monte-Carlo samples)")
    p.add_argument(
        "--val-tile-size",
        type=int,
        dest="val_tile_size",
        help="tile side of the whole-field validation (default 512)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"])
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-reproducible (also when killed and resumed); slower on GPU",
    )
    p.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default="default",
        help="tf.distribute: mirrored = this machine's GPUs; multiworker = the machines in "
        "TF_CONFIG, same command on each (see examples/multi_node_train.sh)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start again (removes only what vsgan wrote)"
    )
    p.add_argument(
        "--force-resume",
        action="store_true",
        dest="force_resume",
        help="resume even if the saved recipe.json differs (dataset, seed, patch size...)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        dest="print_config",
        help="print the equivalent recipe (for --config) and exit",
    )
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="stain files, folders, zarr fields or HCS plates")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument(
        "inputs",
        nargs="+",
        help="images (TIFF, PNG, NPY, HDF5), folders or .zarr: one file per channel named after "
        "the model's channels (bf_focus.tif, phase_z3.tif) makes one field; a folder of them is "
        "a field, a folder of such folders one field each",
    )
    p.add_argument(
        "--channels",
        help="names of a stacked file's channels in order (e.g. bf_minus10um,bf_focus,"
        "bf_plus10um), when the file does not store them",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (a plate: the out .zarr)")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="Monte-Carlo dropout samples (default 1; with --interval, the calibration's)",
    )
    p.add_argument(
        "--interval",
        type=float,
        metavar="LEVEL",
        help="also write the calibrated interval at this coverage, e.g. 0.9 "
        "(<target>_lower90, <target>_upper90)",
    )
    p.add_argument("--archive", help="a549: a local copy of dlmbl_requisites.zip (no download)")
    p.add_argument("--tile-size", type=int, dest="tile_size")
    p.add_argument("--overlap", type=int)
    p.add_argument("--tta", action="store_true", help="average flips and rotations")
    p.add_argument(
        "--format",
        choices=["tiff", "zarr"],
        help="tiff: one OME-TIFF per field (default); zarr: OME-Zarr (a plate in: a plate out)",
    )
    p.add_argument(
        "--mosaic",
        action="store_true",
        help="stream each field (OME-Zarr or TIFF) tile by tile into OME-Zarr: flat memory",
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="stain the I-th of N disjoint subsets of a plate's fields into one shared output",
    )
    p.add_argument("--figure", action="store_true", help="also write a PNG panel per field")
    _precision_flag(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a model on a dataset's held-out split")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument(
        "dataset",
        help="isl-condition-b, mlcp-jurkat, a PairedDataset JSON spec, or a folder of your "
        "held-out fields (one sub-folder per field, or one field) with one file per input and "
        "target channel named after the model's channels",
    )
    p.add_argument("--data", help="dataset folder (default: $VSGAN_DATA)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--archive", help="a549: a local copy of dlmbl_requisites.zip (no download)")
    p.add_argument("-o", "--output", required=True, help="folder for CSV, JSON and figures")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="Monte-Carlo samples (default: the calibration's, else 1)",
    )
    p.add_argument("--tile-size", type=int, dest="tile_size")
    p.add_argument("--no-figures", action="store_true", dest="no_figures")
    _precision_flag(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export the generator for serving")
    p.add_argument("model", help="preset name or .keras file")
    p.add_argument("output", help="SavedModel folder, .onnx file or bioimage.io .zip package")
    p.add_argument(
        "--format",
        choices=["saved_model", "onnx", "bioimageio"],
        help="default: from the output's suffix (.onnx, .zip), else saved_model",
    )
    p.add_argument("--data", help="bioimageio: folder of the preset's dataset for the test tensors")
    p.add_argument("--archive", help="a549: a local copy of dlmbl_requisites.zip (no download)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert a pix2pixHD PyTorch checkpoint to .keras")
    p.add_argument("checkpoint", help="latest_net_G.pth (read without torch)")
    p.add_argument("output", help="the .keras file to write")
    for flag in ("in-channels", "out-channels", "ngf", "n-downsample", "n-blocks"):
        p.add_argument(f"--{flag}", type=int, dest=flag.replace("-", "_"))
    p.add_argument("--dropout", type=float)
    p.add_argument("--discriminator", help="latest_net_D.pth (optional; else a fresh one)")
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
        data = getattr(args, "data", None)
        if data is not None and not Path(data).exists():  # never a silent $VSGAN_DATA
            raise VsganError(
                f"--data {data}: no such file or folder (vsgan does not fall back to "
                "$VSGAN_DATA when --data is given). Fix: check the path, or leave --data out."
            )
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
