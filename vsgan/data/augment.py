"""Paired augmentation: one geometry for input and target, intensity changes on the input only.

Geometric ops (flips, 90-degree rotations, small rotations and scaling) run on input and target
concatenated on channels, so they stay aligned pixel for pixel (interpolation is bilinear, hence
linear: any pixel-wise affine relation between input and target survives). Intensity ops (contrast,
gamma, Gaussian noise, blur) touch the input only: the target must stay the truth. Randomness is
stateless and comes from a per-patch seed, so a pipeline is reproducible whatever its parallelism.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass
class Augmentation:
    """Which augmentations to apply, and how strongly.

    Args:
        flips: random horizontal and vertical flips.
        rot90: random multiples of 90 degrees.
        rotate_degrees: maximum small rotation (0 = off); bilinear, reflect fill.
        scale_range: ``(min, max)`` zoom factor (None = off), e.g. ``(0.9, 1.1)``.
        contrast: maximum relative contrast change of the input (0.2: factor in [0.8, 1.2]).
        gamma: maximum log2 gamma change of the input (0.3: gamma in [0.81, 1.23]).
        noise_std: maximum std of additive Gaussian noise, in model units.
        blur_sigma: maximum Gaussian blur sigma in pixels (0 = off).
        intensity_prob: probability of each intensity op.

    Example:
    >>> aug = Augmentation(rotate_degrees=10.0, noise_std=0.05)
    >>> x, y = aug(tf.zeros((32, 32, 1)), tf.zeros((32, 32, 2)), seed=tf.constant([1, 2]))
    """

    flips: bool = True
    rot90: bool = True
    rotate_degrees: float = 0.0
    scale_range: tuple[float, float] | None = None
    contrast: float = 0.2
    gamma: float = 0.0
    noise_std: float = 0.05
    blur_sigma: float = 0.0
    intensity_prob: float = 0.5

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> Augmentation:
        return cls(**config)

    @classmethod
    def geometric_only(cls, **kwargs) -> Augmentation:
        """Flips and 90-degree rotations, nothing else (exactly invertible)."""
        return cls(contrast=0.0, gamma=0.0, noise_std=0.0, blur_sigma=0.0, **kwargs)

    def __call__(self, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Augments one pair.

        Args:
            x: input (H, W, Cin) float32.
            y: target (H, W, Cout) float32.
            seed: int32/int64 tensor of shape (2,) (stateless randomness).

        Returns:
            ``(x, y)`` augmented, same shapes.
        """
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 10)
        cin = tf.shape(x)[-1]
        both = tf.concat([x, y], axis=-1)
        both = geometric(
            both,
            seeds[:4],
            flips=self.flips,
            rot90=self.rot90,
            rotate_degrees=self.rotate_degrees,
            scale_range=self.scale_range,
        )
        x, y = both[..., :cin], both[..., cin:]
        x = intensity(
            x,
            seeds[4:],
            contrast=self.contrast,
            gamma=self.gamma,
            noise_std=self.noise_std,
            blur_sigma=self.blur_sigma,
            prob=self.intensity_prob,
        )
        return x, y


def _coin(seed) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed) < 0.5


def geometric(
    image: tf.Tensor,
    seeds: tf.Tensor,
    *,
    flips: bool = True,
    rot90: bool = True,
    rotate_degrees: float = 0.0,
    scale_range: tuple[float, float] | None = None,
) -> tf.Tensor:
    """Random flips / 90-degree rotations / small affine of an (H, W, C) image (seeds: (4, 2))."""
    if flips:
        image = tf.cond(_coin(seeds[0]), lambda: tf.image.flip_left_right(image), lambda: image)
        image = tf.cond(_coin(seeds[1]), lambda: tf.image.flip_up_down(image), lambda: image)
    if rot90:
        # Square patches keep their shape; others only take 0 or 180 degrees.
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
        k = tf.where(tf.equal(h, w), k, 2 * (k % 2))
        image = tf.image.rot90(image, k)
    if rotate_degrees or scale_range:
        u = tf.random.stateless_uniform([2], seeds[3])
        angle = (2.0 * u[0] - 1.0) * rotate_degrees * math.pi / 180.0
        lo, hi = scale_range or (1.0, 1.0)
        image = affine(image, angle, lo + (hi - lo) * u[1])
    return image


def affine(image: tf.Tensor, angle: tf.Tensor, zoom: tf.Tensor) -> tf.Tensor:
    """Rotates by `angle` radians and zooms by `zoom` about the centre (bilinear, reflect fill)."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    cy, cx = (h - 1.0) / 2.0, (w - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    a2 = cx - cos * cx + sin * cy
    b2 = cy - sin * cx - cos * cy
    transform = tf.stack([cos, -sin, a2, sin, cos, b2, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.cast(transform, tf.float32),
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return out[0]


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of an (H, W, C) image, kernel 2 * radius + 1, reflect padding."""
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(t / tf.maximum(sigma, 1e-3)))
    k = k / tf.reduce_sum(k)
    c = tf.shape(image)[-1]
    img = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, c, 1])
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, c, 1])
    img = tf.nn.depthwise_conv2d(img, kx, [1, 1, 1, 1], "VALID")
    img = tf.nn.depthwise_conv2d(img, ky, [1, 1, 1, 1], "VALID")
    return img[0]


def intensity(
    x: tf.Tensor,
    seeds: tf.Tensor,
    *,
    contrast: float = 0.0,
    gamma: float = 0.0,
    noise_std: float = 0.0,
    blur_sigma: float = 0.0,
    prob: float = 0.5,
) -> tf.Tensor:
    """Random contrast, gamma, blur and Gaussian noise of an (H, W, C) input (seeds: (6, 2))."""
    u = tf.random.stateless_uniform([8], seeds[0])
    mean = tf.reduce_mean(x, axis=[0, 1], keepdims=True)
    if contrast:
        factor = 1.0 + (2.0 * u[1] - 1.0) * contrast
        x = tf.where(u[0] < prob, (x - mean) * factor + mean, x)
    if gamma:
        g = tf.pow(2.0, (2.0 * u[3] - 1.0) * gamma)
        lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
        span = tf.maximum(tf.reduce_max(x, axis=[0, 1], keepdims=True) - lo, 1e-6)
        x = tf.where(u[2] < prob, tf.pow((x - lo) / span, g) * span + lo, x)
    if blur_sigma:
        radius = max(1, int(math.ceil(2.0 * blur_sigma)))
        x = tf.cond(u[4] < prob, lambda: gaussian_blur(x, u[5] * blur_sigma, radius), lambda: x)
    if noise_std:
        noise = tf.random.stateless_normal(tf.shape(x), seeds[1]) * (u[7] * noise_std)
        x = tf.where(u[6] < prob, x + noise, x)
    return x
