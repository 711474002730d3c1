"""Maps PyTorch pix2pixHD generator (and discriminator) weights onto vsgan's Keras models.

Weights are matched by layer order and shape, never by state-dict index: checkpoints
trained with dropout in the residual blocks shift the indices (`conv_block.6` instead of
`conv_block.5`), and other forks renumber freely. Every torch weight must be used and every
Keras convolution assigned, otherwise the checkpoint belongs to another architecture and
a `ModelFileError` says which shapes differ.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from vsgan.errors import ModelFileError
from vsgan.io.files import atomic_path
from vsgan.models.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from vsgan.models.generator import GlobalGenerator, LocalEnhancer, ResnetBlock
from vsgan.models.pix2pixhd import Pix2PixHD
from vsgan.zoo.torch_checkpoint import load_torch_state_dict

StateDict = dict[str, np.ndarray]
_CONV_TYPES = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)


class OutputExistsError(ModelFileError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"'{out}' exists; pass overwrite=True (--overwrite) to replace it, or choose "
            "another output path."
        )


def _natural_key(path: str) -> list[tuple]:
    """Sorts module paths as torch registered them, even if the keys were re-sorted.

    Compared per dotted component, numbers as numbers: "model.9" < "model.10" and
    "model.14" < "model1_1.1" (the global generator before the enhancers).
    """
    key = []
    for part in path.split("."):
        pieces = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", part) if p]
        key.append((0, int(part)) if part.isdigit() else (1, pieces))
    return key


def _torch_convs(state: StateDict) -> tuple[list[tuple[str, np.ndarray, np.ndarray | None]], list]:
    """Groups a state dict into (module path, 4-D weight, bias) in registration order.

    Returns:
        The convolution modules, and the keys that are not part of one (e.g. affine or
        batch-norm parameters, which vsgan's instance norm does not have).
    """
    weights = {k[: -len(".weight")]: v for k, v in state.items() if k.endswith(".weight")}
    convs, used = [], set()
    for path in sorted(weights, key=_natural_key):
        weight = weights[path]
        if weight.ndim != 4:
            continue
        bias = state.get(f"{path}.bias")
        convs.append((path, weight, bias))
        used.update({f"{path}.weight", f"{path}.bias"})
    unused = [k for k in state if k not in used]
    return convs, unused


def _sub_generators(generator: keras.Model) -> list[keras.Model]:
    """The generators inside `generator`: itself, or one per channel when split."""
    if isinstance(generator, GlobalGenerator | LocalEnhancer):
        return [generator]
    subs = [
        layer for layer in generator.layers if isinstance(layer, GlobalGenerator | LocalEnhancer)
    ]
    if not subs:
        raise TypeError(f"{generator.name!r} holds no GlobalGenerator or LocalEnhancer.")
    return subs


def _generator_layer_group(name: str, n_local: int) -> int:
    """Position of a layer's group in torch's order: G1, then enhancers coarse to fine."""
    if name.startswith("global_"):
        return 0
    match = re.match(r"local(\d+)_", name)
    if match:  # local{n_local} (coarsest) is torch's model1_1 / model1_2
        return 1 + n_local - int(match.group(1))
    if name.startswith("conv_out"):  # the output head closes the last torch sequential
        return n_local + 1
    return 0


def keras_generator_convs(generator: GlobalGenerator | LocalEnhancer) -> list[keras.layers.Layer]:
    """A single generator's convolution layers in the order torch registers them.

    Functional `layers` are topologically sorted, which interleaves a local enhancer's
    front end with G1; the layer-name groups restore torch's module order.
    """
    n_local = getattr(generator, "n_local_enhancers", 0)
    ordered = sorted(
        enumerate(generator.layers),
        key=lambda item: (_generator_layer_group(item[1].name, n_local), item[0]),
    )
    convs = []
    for _, layer in ordered:
        if isinstance(layer, ResnetBlock):
            convs += [layer.conv1, layer.conv2]
        elif isinstance(layer, _CONV_TYPES):
            convs.append(layer)
    return convs


def _torch_shape(layer: keras.layers.Layer) -> tuple[int, ...]:
    """The torch weight shape that fits a built Keras convolution."""
    # Conv2D: Keras (kh, kw, in, out) <- torch (out, in, kh, kw);
    # Conv2DTranspose: Keras (kh, kw, out, in) <- torch (in, out, kh, kw). One rule for both.
    kh, kw, a, b = layer.kernel.shape
    return (b, a, kh, kw)


def _label(layer: keras.layers.Layer) -> str:
    # The kernel's path names the enclosing block too ("global_block0/conv1").
    return layer.kernel.path.rsplit("/", 1)[0]


def _assign(layers: Sequence[keras.layers.Layer], state: StateDict, what: str) -> None:
    """Assigns torch convolutions to Keras layers pairwise, after checking every shape."""
    convs, unused = _torch_convs(state)
    problems = []
    if unused:
        problems.append(f"weights vsgan has no place for: {', '.join(unused[:8])}")
    if len(convs) != len(layers):
        problems.append(
            f"the checkpoint has {len(convs)} convolutions, the Keras {what} {len(layers)}"
        )
    for (path, weight, bias), layer in zip(convs, layers):
        expected = _torch_shape(layer)
        if tuple(weight.shape) != expected:
            problems.append(
                f"'{path}.weight' is {tuple(weight.shape)} where Keras layer "
                f"'{_label(layer)}' needs {expected}"
            )
        if bias is not None and bias.shape != (layer.filters,):
            problems.append(f"'{path}.bias' is {bias.shape}, expected ({layer.filters},)")
    if problems:
        hint = (
            "Pass the config it was trained with (ndf, num_d, n_layers_d; the discriminator "
            "sees in_channels + out_channels channels), or leave them out to infer them."
            if what == "discriminator"
            else "Pass the config it was trained with (in_channels, out_channels, ngf, "
            "n_downsample, n_blocks, n_local_enhancers, n_blocks_local), or leave them out "
            "to infer them."
        )
        raise ModelFileError(
            f"The checkpoint does not fit the {what} (a checkpoint of another architecture, "
            "or the wrong config): " + "; ".join(problems[:6]) + ". Fix: " + hint
        )
    for (_, weight, bias), layer in zip(convs, layers):
        # torch stores both conv types as (dim0, dim1, kh, kw); Keras wants (kh, kw, dim1, dim0).
        kernel = np.transpose(weight, (2, 3, 1, 0)).astype(np.float32)
        values = [kernel]
        if layer.use_bias:
            values.append(np.zeros(layer.filters, np.float32) if bias is None else bias)
        elif bias is not None and np.any(bias):
            raise ModelFileError(f"Keras layer '{_label(layer)}' has no bias for the torch bias.")
        layer.set_weights([v.astype(np.float32) for v in values])


def load_generator_weights(
    generator: keras.Model, state_dict: StateDict | Sequence[StateDict]
) -> None:
    """Copies pix2pixHD generator weights into a vsgan generator, in place.

    Args:
        generator: `GlobalGenerator`, `LocalEnhancer`, or a split generator (one
            single-channel generator per output channel, `Pix2PixHD(split_outputs=True)`).
        state_dict: a pix2pixHD `netG` state dict (numpy arrays, as from
            `load_torch_state_dict`), or one per sub-generator of a split generator.

    Raises:
        ModelFileError: the weights do not fit (counts or shapes differ, or some are unused).
    """
    subs = _sub_generators(generator)
    states = [state_dict] if isinstance(state_dict, dict) else list(state_dict)
    if len(states) != len(subs):
        raise ModelFileError(
            f"{len(states)} generator checkpoint(s) for {len(subs)} generator(s): give one "
            "per output channel of a split generator, else one."
        )
    for i, (sub, state) in enumerate(zip(subs, states)):
        what = "generator" if len(subs) == 1 else f"generator of output channel {i}"
        _assign(keras_generator_convs(sub), state, what)


def load_discriminator_weights(discriminator: MultiScaleDiscriminator, state_dict: StateDict):
    """Copies a pix2pixHD multi-scale discriminator (`latest_net_D.pth`) into vsgan's.

    pix2pixHD runs its module `scale{num_D-1}` on the full-resolution pair and `scale0` on
    the coarsest; vsgan's `scale0` is the full-resolution one, so the order is reversed.

    Args:
        discriminator: a `MultiScaleDiscriminator` (`Pix2PixHD.discriminator`).
        state_dict: keys `scale<i>_layer<j>.0.weight|bias` (`getIntermFeat=True`, the default).

    Raises:
        ModelFileError: the weights do not fit.
    """
    scales = [layer for layer in discriminator.layers if isinstance(layer, PatchDiscriminator)]
    layers = []
    for patch in reversed(scales):
        layers += [layer for layer in patch.layers if isinstance(layer, _CONV_TYPES)]
    _assign(layers, state_dict, "discriminator")


_BATCH_NORM_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def _check_kind(state: StateDict, want: str, where: str = "the checkpoint") -> None:
    """Names what a checkpoint is when it is not the `want`ed pix2pixHD part.

    Each mismatch has its own message: a batch-norm model, the feature encoder
    (`latest_net_E.pth`), a discriminator given as the generator, and the other way round.
    """
    keys = list(state)
    if any(k.endswith(_BATCH_NORM_SUFFIXES) for k in keys):
        raise ModelFileError(
            f"{where} was trained with batch normalisation (it holds running_mean / "
            "running_var statistics, pix2pixHD's --norm batch); vsgan's pix2pixHD uses "
            "instance normalisation without statistics (pix2pixHD's default --norm "
            "instance), so these weights cannot be converted. Fix: convert a model trained "
            "with --norm instance, or retrain with it."
        )
    is_d = any(re.match(r"(scale\d+_)?layer\d+\.", k) for k in keys)
    is_g = any(k.startswith("model") for k in keys) and not is_d
    if want == "generator" and is_d:
        raise ModelFileError(
            f"{where} is a pix2pixHD discriminator (latest_net_D.pth), not a generator. Fix: "
            "give the generator latest_net_G.pth as the checkpoint, and this file as "
            "discriminator= (vsgan convert --discriminator)."
        )
    if want == "discriminator" and is_g:
        raise ModelFileError(
            f"{where} is a pix2pixHD generator or encoder (its keys start with 'model'), not "
            "a discriminator. Fix: give latest_net_D.pth as discriminator=, or leave it out "
            "(the discriminator then starts fresh)."
        )
    if want == "generator" and is_g and not any(".conv_block." in k for k in keys):
        if _torch_convs(state)[0]:
            raise ModelFileError(
                f"{where} has no residual blocks: it is pix2pixHD's feature encoder "
                "(latest_net_E.pth, trained with --instance_feat or --label_feat), not a "
                "generator. Fix: convert latest_net_G.pth; vsgan does not use the encoder's "
                "instance features."
            )


def infer_generator_config(state_dict: StateDict) -> dict[str, int]:
    """Reads a pix2pixHD generator's architecture from the weight shapes.

    Args:
        state_dict: a `netG` state dict (global generator or local enhancer).

    Returns:
        `in_channels`, `out_channels`, `ngf`, `n_downsample`, `n_blocks`,
        `n_local_enhancers`, `n_blocks_local` (dropout leaves no weights: pass it yourself).

    Raises:
        ModelFileError: the keys do not look like a pix2pixHD generator.
    """
    _check_kind(state_dict, "generator")
    convs, _ = _torch_convs(state_dict)
    by_top: dict[str, list] = {}
    for path, weight, _ in convs:
        by_top.setdefault(path.split(".")[0], []).append((path, weight))
    enhancers = sorted(int(m.group(1)) for t in by_top if (m := re.fullmatch(r"model(\d+)_1", t)))
    n_local = len(enhancers)
    if "model" not in by_top or enhancers != list(range(1, n_local + 1)):
        raise ModelFileError(
            f"The checkpoint is not a pix2pixHD generator (modules {sorted(by_top)}; expected "
            "'model' and, for a local enhancer, 'model1_1', 'model1_2', ...)."
        )

    def blocks(entries):
        return len({p.split(".conv_block.")[0] for p, _ in entries if ".conv_block." in p})

    trunk = by_top["model"]
    first_block = next((i for i, (p, _) in enumerate(trunk) if ".conv_block." in p), None)
    if first_block is None:
        raise ModelFileError("The checkpoint's generator has no residual blocks ('conv_block').")
    head = trunk[0][1]
    config = {
        "in_channels": int(head.shape[1]),
        "n_downsample": first_block - 1,
        "n_blocks": blocks(trunk),
        "n_local_enhancers": n_local,
        "n_blocks_local": blocks(by_top.get("model1_2", [])) if n_local else 3,
    }
    if n_local:
        config["ngf"] = int(head.shape[0]) // 2**n_local
        config["out_channels"] = int(by_top[f"model{n_local}_2"][-1][1].shape[0])
    else:
        config["ngf"] = int(head.shape[0])
        config["out_channels"] = int(trunk[-1][1].shape[0])
    return config


def infer_discriminator_config(state_dict: StateDict) -> dict[str, int]:
    """Reads `ndf`, `num_d` and `n_layers_d` from a pix2pixHD `netD` state dict.

    Raises:
        ModelFileError: not a multi-scale discriminator saved with intermediate features,
            or scales / layers missing (each scale must hold layers 0 .. n_layers_d + 1).
    """
    _check_kind(state_dict, "discriminator", "The discriminator checkpoint")
    found = [re.fullmatch(r"scale(\d+)_layer(\d+)\.0\.weight", k) for k in state_dict]
    pairs = {(int(m.group(1)), int(m.group(2))) for m in found if m}
    if not pairs:
        plain = any(re.match(r"layer\d+\.", k) for k in state_dict)
        raise ModelFileError(
            "The discriminator checkpoint has no 'scale<i>_layer<j>.0.weight' keys: it is not "
            "a pix2pixHD multi-scale discriminator saved with intermediate features"
            + (" (it was trained with --no_ganFeat_loss)" if plain else "")
            + ". Fix: leave the discriminator out (it then starts fresh), or convert one "
            "trained with feature matching (pix2pixHD's default)."
        )
    num_d = 1 + max(i for i, _ in pairs)
    n_layers = max(j for _, j in pairs) - 1
    missing = [
        f"scale{i}_layer{j}.0.weight"
        for i in range(num_d)
        for j in range(n_layers + 2)
        if (i, j) not in pairs
    ]
    if missing or n_layers < 1 or num_d > _LIMITS["num_d"] or n_layers > _LIMITS["n_layers_d"]:
        raise ModelFileError(
            f"The discriminator checkpoint is incomplete or not pix2pixHD's: scales 0..{num_d - 1}"
            f" with layers 0..{n_layers + 1} would need {', '.join(missing[:4]) or 'fewer'}"
            f"{' ...' if len(missing) > 4 else ''}. Fix: give the complete latest_net_D.pth, "
            "or leave the discriminator out."
        )
    head = state_dict["scale0_layer0.0.weight"]
    if head.ndim != 4:
        raise ModelFileError(
            f"The discriminator checkpoint's first convolution has shape {head.shape}, not 4-D. "
            "Fix: give pix2pixHD's latest_net_D.pth."
        )
    return {"ndf": int(head.shape[0]), "num_d": num_d, "n_layers_d": n_layers}


# Architectures no pix2pixHD checkpoint exceeds; a file implying more is refused before
# any layer is allocated (a crafted 3 KB generator can imply ngf 4096).
_LIMITS = {
    "in_channels": 1024,
    "out_channels": 1024,
    "ngf": 1024,
    "n_downsample": 8,
    "n_blocks": 64,
    "n_local_enhancers": 4,
    "n_blocks_local": 64,
    "ndf": 1024,
    "num_d": 8,
    "n_layers_d": 8,
}
MAX_PARAMETERS = 2_000_000_000


def _generator_parameters(c: dict[str, Any]) -> int:
    """Convolution weights of the generator a config builds (biases left out)."""
    cin, nd, nb, nl = c["in_channels"], c["n_downsample"], c["n_blocks"], c["n_local_enhancers"]

    def trunk(f: int) -> int:
        p = 49 * cin * f
        p += sum(2 * 9 * (f << i) * (f << (i + 1)) for i in range(nd))  # down and up
        return p + nb * 2 * 9 * (f << nd) ** 2

    ngf = c["ngf"]
    if nl:
        p = trunk(ngf << nl)
        for level in range(1, nl + 1):
            f = ngf << (level - 1)
            p += 49 * cin * f + 2 * 9 * f * 2 * f + c["n_blocks_local"] * 2 * 9 * (2 * f) ** 2
    else:
        p = trunk(ngf)
    outs = c["out_channels"]
    if c.get("split_outputs"):
        return outs * (p + 49 * ngf)
    return p + 49 * ngf * outs


def _discriminator_parameters(c: dict[str, Any]) -> int:
    channels, filters, p = c["in_channels"] + c["out_channels"], c["ndf"], 0
    for i in range(c["n_layers_d"] + 2):
        last = i == c["n_layers_d"] + 1
        out = filters if i == 0 else 1 if last else min(filters * 2, 512)
        p += 16 * channels * out
        channels = filters = out
    return c["num_d"] * p


def _bound_architecture(config: dict[str, Any], stored: int, discriminator: bool) -> None:
    """Refuses a config whose model is out of range or far larger than the stored weights."""
    defaults = {"n_local_enhancers": 0, "n_blocks_local": 3, "ndf": 64, "num_d": 3}
    c = {**defaults, "n_layers_d": 3, **config}
    for key, limit in _LIMITS.items():
        value = c.get(key)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ModelFileError(
                f"{key}={value!r} is not a whole number. Fix: give a whole number from 0 to "
                f"{limit}."
            )
        low = 0 if key in ("n_downsample", "n_blocks", "n_local_enhancers") else 1
        if not low <= value <= limit:
            raise ModelFileError(
                f"The checkpoint (or the config given) implies {key}={int(value)}, outside "
                f"{low}..{limit}: it is not a pix2pixHD model. Fix: give the config the "
                "checkpoint was trained with, or check the file."
            )
    c = {k: int(v) if isinstance(v, int | np.integer) else v for k, v in c.items()}
    needed = _generator_parameters(c)
    if discriminator:
        needed += _discriminator_parameters(c)
    if needed > MAX_PARAMETERS or needed > 2 * stored + 10_000_000:
        raise ModelFileError(
            f"The checkpoint's shapes imply a model of {needed:,} weights, but it stores only "
            f"{stored:,}: it is crafted or belongs to another architecture. Fix: give the "
            "config it was trained with, or check the file."
        )


def from_pix2pixhd(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    discriminator: str | os.PathLike | None = None,
    **config: Any,
):
    """Builds a `vsgan.Pix2PixHD` holding the weights of a pix2pixHD checkpoint.

    Args:
        path: `latest_net_G.pth` (torch zip format), or a list of them, one per output
            channel, stacked into one split stainer (`split_outputs=True`; each must be a
            single-output generator).
        discriminator: optional `latest_net_D.pth`; without it the discriminator is
            freshly initialised (enough for inference and fine-tuning).
        **config: `Pix2PixHD` arguments (in_channels, out_channels, ngf, n_downsample,
            n_blocks, n_local_enhancers, n_blocks_local, dropout, ndf, num_d, n_layers_d,
            input_channels, output_channels, normalization, ...). Architecture values left
            out are read from the weight shapes; given ones are checked against them.

    Returns:
        The model, generator weights loaded, uncompiled.

    Raises:
        ModelFileError: unreadable checkpoint or weights that do not fit the config.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    states = [load_torch_state_dict(p) for p in paths]
    inferred = infer_generator_config(states[0])
    for p, state in zip(paths[1:], states[1:]):
        _check_kind(state, "generator", f"'{p}'")
    if len(states) > 1:
        if inferred["out_channels"] != 1:
            raise ModelFileError(
                f"Stacking {len(states)} generators needs single-output checkpoints; "
                f"'{paths[0]}' predicts {inferred['out_channels']} channels."
            )
        inferred.update(out_channels=len(states), split_outputs=True)
    d_state = load_torch_state_dict(discriminator) if discriminator is not None else None
    if d_state is not None:
        inferred.update(infer_discriminator_config(d_state))
    settings = {**inferred, **config}
    stored = sum(int(v.size) for state in [*states, d_state or {}] for v in state.values())
    _bound_architecture(settings, stored, d_state is not None)
    try:
        model = Pix2PixHD(**settings)
    except MemoryError:
        raise ModelFileError(
            f"The model the checkpoint implies ({settings}) does not fit in memory. Fix: check "
            "the file and the config; free memory for a genuinely large model."
        ) from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(
            f"The config {config} does not build a Pix2PixHD ({error}). Fix: give "
            "Pix2PixHD's keyword arguments with their documented types."
        ) from None
    load_generator_weights(model.generator, states if model.split_outputs else states[0])
    if d_state is not None:
        load_discriminator_weights(model.discriminator, d_state)
    return model


def save_keras_atomic(model: keras.Model, out_path: str | os.PathLike, overwrite: bool = False):
    """Saves `model` as `.keras` under a temporary name, then renames it into place.

    A crash or a full disk mid-write never leaves a truncated file at `out_path`, and a
    concurrent reader sees either the old file or the complete new one.

    Args:
        model: the model to save.
        out_path: destination, ending in `.keras`.
        overwrite: replace an existing file.

    Returns:
        The destination as a `Path`.

    Raises:
        OutputExistsError: `out_path` exists and `overwrite` is False (a
            `ModelFileError` and a `FileExistsError`).
        ValueError: `out_path` does not end in `.keras`.
    """
    out = Path(out_path)
    if out.suffix != ".keras":
        raise ValueError(f"'{out}' must end in .keras (Keras' native format).")
    _refuse_existing(out, overwrite)
    with atomic_path(out) as tmp:
        model.save(tmp, overwrite=True)
    return out


def convert_checkpoint(
    ckpt: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    overwrite: bool = False,
    **config: Any,
) -> Path:
    """Converts a pix2pixHD checkpoint into a `.keras` file (what `vsgan convert` runs).

    Args:
        ckpt: `latest_net_G.pth`, or one per output channel (see `from_pix2pixhd`).
        out_path: the `.keras` file to write (atomically).
        overwrite: replace an existing `out_path`.
        **config: `from_pix2pixhd` arguments (`discriminator=` and `Pix2PixHD` config).

    Returns:
        The path written.

    Raises:
        OutputExistsError: `out_path` exists and `overwrite` is False (a
            `ModelFileError` and a `FileExistsError`).
        ModelFileError: unreadable checkpoint or weights that do not fit.
    """
    out = Path(out_path)
    _refuse_existing(out, overwrite)  # before converting, which can take a while
    model = from_pix2pixhd(ckpt, **config)
    return save_keras_atomic(model, out, overwrite=overwrite)
