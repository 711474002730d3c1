"""GAN losses of pix2pixHD: adversarial (LSGAN, hinge, BCE) and discriminator feature matching.

Every function takes the nested discriminator outputs (a list over scales of lists of
feature maps, the last being the logits) and returns a float32 scalar: the mean over the
local batch, summed over scales as in the original code.
"""

from __future__ import annotations

import keras
from keras import ops

GAN_LOSSES = ("lsgan", "hinge", "bce")


def _f32(x):
    return ops.cast(x, "float32")


def _check(kind: str) -> str:
    if kind not in GAN_LOSSES:
        raise ValueError(f"gan_loss={kind!r} is unknown: use one of {', '.join(GAN_LOSSES)}.")
    return kind


def discriminator_loss(real, fake, kind: str = "lsgan"):
    """0.5 * (loss on real pairs labelled real + loss on generated pairs labelled fake).

    Args:
        real: discriminator outputs for (input, target) pairs.
        fake: discriminator outputs for (input, generated) pairs.
        kind: "lsgan" (least squares, targets 1 and 0), "hinge" or "bce" (logits).
    """
    _check(kind)
    total = 0.0
    for r, f in zip(real, fake):
        r, f = _f32(r[-1]), _f32(f[-1])
        if kind == "lsgan":
            total += ops.mean(ops.square(r - 1.0)) + ops.mean(ops.square(f))
        elif kind == "hinge":
            total += ops.mean(ops.relu(1.0 - r)) + ops.mean(ops.relu(1.0 + f))
        else:
            bce = keras.losses.binary_crossentropy
            total += ops.mean(bce(ops.ones_like(r), r, from_logits=True, axis=None))
            total += ops.mean(bce(ops.zeros_like(f), f, from_logits=True, axis=None))
    return 0.5 * total


def generator_adversarial_loss(fake, kind: str = "lsgan"):
    """The generator's adversarial loss: its pairs should be judged real."""
    _check(kind)
    total = 0.0
    for f in fake:
        f = _f32(f[-1])
        if kind == "lsgan":
            total += ops.mean(ops.square(f - 1.0))
        elif kind == "hinge":
            total += -ops.mean(f)
        else:
            bce = keras.losses.binary_crossentropy
            total += ops.mean(bce(ops.ones_like(f), f, from_logits=True, axis=None))
    return total


def feature_matching_loss(real, fake, n_layers: int, weight: float = 10.0):
    """L1 between discriminator features of generated and real pairs, every layer but the logits.

    Weighted as pix2pixHD: `weight * 4 / (n_layers + 1) / num_d` per layer. Real
    features carry no gradient.

    Args:
        real: discriminator outputs for (input, target) pairs.
        fake: discriminator outputs for (input, generated) pairs.
        n_layers: strided layers of each PatchGAN.
        weight: lambda_feat (10 in pix2pixHD).
    """
    scale = weight * 4.0 / (n_layers + 1) / len(real)
    total = 0.0
    for r_scale, f_scale in zip(real, fake):
        for r, f in zip(r_scale[:-1], f_scale[:-1]):
            total += ops.mean(ops.abs(_f32(f) - ops.stop_gradient(_f32(r))))
    return scale * total
