"""Synthetic cells: physically motivated quantitative-phase / nuclei / membrane image pairs.

Each cell is an ellipsoid of cytoplasm (refractive index ~1.36) holding an ellipsoidal nucleus
(~1.38) in medium (1.337). The label-free input is the phase delay of a plane wave through the
sample, ``2 pi / lambda * integral (n - n_medium) dz``, with a slowly varying background, slight
defocus blur and camera noise. The targets come from the same geometry: the nuclear stain is the
projected nuclear thickness times a chromatin texture, the membrane stain is the projection of the
cell's surface shell (bright at the rim, where the shell is seen edge-on); both are blurred by the
microscope's PSF and recorded with shot and read noise. Phase and stains therefore share their
structure but not their intensities: a model has to learn the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vsgan.data.normalize import Normalization
from vsgan.data.spec import PairedDataset
from vsgan.errors import InputError

N_MEDIUM = 1.337
N_CYTOPLASM = 1.360
N_NUCLEUS = 1.380
WAVELENGTH_UM = 0.532
TARGETS = ("nuclei", "membrane")


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur through the FFT (periodic edges; cheap for whole fields)."""
    if sigma <= 0:
        return img
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(img) * kernel, s=img.shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = _blur(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-12)


def _ellipse_radius(yy, xx, cy, cx, a, b, theta):
    """Normalised elliptical radius: 1 on the ellipse's outline."""
    c, s = np.cos(theta), np.sin(theta)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def synthetic_field(
    rng: np.random.Generator,
    size: int | tuple[int, int] = 256,
    *,
    cell_radius: tuple[float, float] = (10.0, 22.0),
    coverage: float = 0.35,
    pixel_um: float = 0.5,
    psf_sigma: float = 1.2,
    photons: float = 2000.0,
    read_noise: float = 5.0,
    phase_noise: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One field: ``(phase (H, W) float32 radians, nuclei (H, W) uint16, membrane (H, W) uint16)``.

    Args:
        rng: the random generator.
        size: field side or ``(H, W)`` in pixels.
        cell_radius: range of cell semi-axes in pixels.
        coverage: approximate fraction of the field covered by cells.
        pixel_um: pixel size in micrometres (sets thickness and phase scale).
        psf_sigma: fluorescence PSF sigma in pixels.
        photons: expected photons at the brightest stain pixels (sets shot noise).
        read_noise: camera read noise, counts.
        phase_noise: phase noise std, radians.
    """
    h, w = (size, size) if isinstance(size, int) else size
    opd = np.zeros((h, w))  # optical path difference, um
    nuc = np.zeros((h, w))  # projected nuclear thickness x chromatin density
    mem = np.zeros((h, w))  # projected membrane shell
    mean_area = np.pi * np.mean(cell_radius) ** 2 * 0.8
    n_cells = rng.poisson(max(coverage * h * w / mean_area, 1.0))
    texture = 0.75 + 0.25 * _smooth_noise(rng, (h, w), 1.5)  # chromatin
    centres: list[tuple[float, float, float]] = []
    for _ in range(n_cells):
        a = rng.uniform(*cell_radius)
        b = a * rng.uniform(0.6, 1.0)
        for _try in range(20):  # cells touch but rarely overlap much
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            if all((cy - y) ** 2 + (cx - x) ** 2 > (0.8 * (a + r)) ** 2 for y, x, r in centres):
                break
        centres.append((cy, cx, a))
        theta = rng.uniform(0, np.pi)
        height_um = rng.uniform(3.0, 7.0)  # cell thickness at the centre
        y0, y1 = int(max(cy - a - 2, 0)), int(min(cy + a + 3, h))
        x0, x1 = int(max(cx - a - 2, 0)), int(min(cx + a + 3, w))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        r = _ellipse_radius(yy, xx, cy, cx, a, b, theta)
        inside = r < 1.0
        cell_t = height_um * np.sqrt(np.clip(1.0 - r**2, 0.0, None))
        # Nucleus: a smaller ellipsoid, off-centre, not always aligned with the cell.
        f = rng.uniform(0.4, 0.6)
        ny = cy + rng.uniform(-0.2, 0.2) * b
        nx = cx + rng.uniform(-0.2, 0.2) * a
        rn = _ellipse_radius(yy, xx, ny, nx, f * a, f * b, theta + rng.normal(0, 0.3))
        nuc_t = 0.8 * height_um * np.sqrt(np.clip(1.0 - rn**2, 0.0, None))
        nuc_t = np.minimum(nuc_t, cell_t)
        opd[y0:y1, x0:x1] += (N_CYTOPLASM - N_MEDIUM) * (cell_t - nuc_t)
        opd[y0:y1, x0:x1] += (N_NUCLEUS - N_MEDIUM) * nuc_t
        dna = rng.uniform(0.7, 1.3)  # cell-cycle dependent DNA content
        nuc[y0:y1, x0:x1] += dna * nuc_t * texture[y0:y1, x0:x1]
        # A thin shell seen in projection: path length ~ 1 / cos(angle to the normal).
        shell = np.where(inside, 1.0 / np.sqrt(np.clip(1.0 - r**2, 0.02, None)), 0.0)
        mem[y0:y1, x0:x1] += rng.uniform(0.8, 1.2) * np.minimum(shell, 7.0) * inside
    phase = 2.0 * np.pi / WAVELENGTH_UM * opd
    phase = _blur(phase, 0.7)  # slight defocus
    phase += 0.15 * _smooth_noise(rng, (h, w), max(h, w) / 6)  # background / illumination drift
    phase += rng.normal(0.0, phase_noise, (h, w))

    def camera(signal: np.ndarray, background: float) -> np.ndarray:
        s = _blur(signal, psf_sigma)
        s = np.clip(s, 0.0, None) / max(float(s.max()), 1e-9) * photons + background
        counts = rng.poisson(s) + rng.normal(0.0, read_noise, s.shape)
        return np.clip(counts + 100.0, 0, 65535).astype(np.uint16)  # camera offset 100

    return phase.astype(np.float32), camera(nuc, 20.0), camera(mem, 40.0)


def synthetic_cells(
    n_fields: int,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    *,
    targets: Sequence[str] = TARGETS,
    val_fraction: float = 0.25,
    as_arrays: bool = False,
    **field_kwargs,
) -> PairedDataset | tuple[np.ndarray, np.ndarray]:
    """Paired phase -> nuclei / membrane fields of synthetic cells (no files needed).

    Args:
        n_fields: number of fields.
        size: field side or ``(H, W)``.
        seed: random seed (same seed, same fields).
        targets: which stains, in order, from ``("nuclei", "membrane")``.
        val_fraction: fraction of fields for validation (split by field).
        as_arrays: return ``(phase (N, H, W, 1) float32, stains (N, H, W, T) uint16)`` instead of a
            spec.
        **field_kwargs: `synthetic_field` arguments (cell size, noise, PSF ...).

    Returns:
        A `PairedDataset` (input "phase", targets as named; dataset-level percentile
        normalisations, fitted on the training fields when first used) or the arrays.

    Example:
    >>> spec = synthetic_cells(4, size=64, seed=0)
    >>> spec.input_names, spec.target_names
    (['phase'], ['nuclei', 'membrane'])
    """
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise InputError(f"unknown synthetic targets {unknown}; choose from {TARGETS}.")
    if n_fields < 1:
        raise InputError("n_fields must be at least 1.")
    rng = np.random.default_rng(seed)
    phases, stains = [], []
    for _ in range(n_fields):
        phase, nuclei, membrane = synthetic_field(rng, size, **field_kwargs)
        by_name = {"nuclei": nuclei, "membrane": membrane}
        phases.append(phase[..., None])
        stains.append(np.stack([by_name[t] for t in targets], -1))
    x, y = np.stack(phases), np.stack(stains)
    if as_arrays:
        return x, y
    return PairedDataset.from_arrays(
        x,
        y,
        input_names=["phase"],
        target_names=list(targets),
        val_fraction=val_fraction if n_fields > 1 else 0.0,
        seed=seed,
        input_norm=Normalization("percentile"),
        target_norm=Normalization("percentile"),
        name="synthetic_cells",
    )
