"""Train / validation / test splits: by field of view, or by spatial region of one large field.

Regions are rectangles ``(y0, y1, x0, x1)`` (half-open). Patches are always drawn wholly inside one
rectangle, and the rectangles of different splits are disjoint, so no validation or test patch ever
shares a pixel with a training patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vsgan.errors import InputError

Rect = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open
SPLITS = ("train", "val", "test")


def split_fields(
    names: Sequence[str],
    *,
    val_fraction: float = 0.2,
    test: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, str]:
    """Assigns whole fields to splits (VisCy's rule: split by field of view, never by crop).

    Args:
        names: field names.
        val_fraction: fraction of the non-test fields for validation (at least one when > 0).
        test: names held out for testing.
        seed: the shuffle seed.

    Returns:
        ``{field name: "train" | "val" | "test"}``.

    Example:
    >>> split_fields(["a", "b", "c", "d"], val_fraction=0.25, seed=0)["a"] in SPLITS
    True
    """
    unknown = set(test) - set(names)
    if unknown:
        raise InputError(f"test fields {sorted(unknown)} are not among the fields {list(names)}.")
    rest = [n for n in names if n not in set(test)]
    n_val = int(round(val_fraction * len(rest)))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if len(rest) - n_val < 1:
        raise InputError(
            f"too few fields for the split: {len(rest)} non-test field(s) cannot give "
            f"{n_val} validation field(s) and at least one training field. Fix: add fields, "
            "lower val_fraction, or split one large field by region (split_regions)."
        )
    order = np.random.default_rng(seed).permutation(len(rest))
    val = {rest[i] for i in order[:n_val]}
    out = {n: "test" for n in test}
    out.update({n: ("val" if n in val else "train") for n in rest})
    return {n: out[n] for n in names}


def _subtract(outer: Rect, hole: Rect) -> list[Rect]:
    """`outer` minus `hole` as up to four disjoint rectangles (bands above/below, then sides)."""
    y0, y1, x0, x1 = outer
    hy0, hy1 = max(hole[0], y0), min(hole[1], y1)
    hx0, hx1 = max(hole[2], x0), min(hole[3], x1)
    if hy0 >= hy1 or hx0 >= hx1:
        return [outer]
    parts = [(y0, hy0, x0, x1), (hy1, y1, x0, x1), (hy0, hy1, x0, hx0), (hy0, hy1, hx1, x1)]
    return [r for r in parts if r[1] > r[0] and r[3] > r[2]]


def area(rect: Rect) -> int:
    return (rect[1] - rect[0]) * (rect[3] - rect[2])


def split_regions(
    height: int,
    width: int,
    *,
    test_region: Rect | None = None,
    val_fraction: float = 0.25,
    min_size: int = 0,
) -> dict[str, list[Rect]]:
    """Splits one large field into disjoint train / val / test rectangles.

    The test rectangle is removed first; the validation strip is cut from the far end of the largest
    remaining rectangle, along its longer side, so it stays as compact as possible.

    Args:
        height: field height.
        width: field width.
        test_region: ``(y0, y1, x0, x1)`` held out for testing (e.g. ISL's bottom-right quadrant
            ``(512, 1024, 512, 1024)``), or None.
        val_fraction: fraction of the non-test area for validation.
        min_size: the smallest side a validation strip may have (use the patch size).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` lists of rectangles.

    Example:
    >>> r = split_regions(1024, 1024, test_region=(512, 1024, 512, 1024))
    >>> r["test"], r["val"]
    ([(512, 1024, 512, 1024)], [(0, 512, 640, 1024)])
    """
    field: Rect = (0, height, 0, width)
    rest = _subtract(field, test_region) if test_region else [field]
    total = sum(area(r) for r in rest)
    out: dict[str, list[Rect]] = {
        "train": [],
        "val": [],
        "test": [test_region] if test_region else [],
    }
    if val_fraction <= 0:
        out["train"] = rest
        return out
    big = max(rest, key=lambda r: (min(r[1] - r[0], r[3] - r[2]), area(r)))
    y0, y1, x0, x1 = big
    want = val_fraction * total
    if x1 - x0 >= y1 - y0:
        cut = max(int(round(want / (y1 - y0))), min_size)
        if cut >= x1 - x0:
            raise InputError(f"field {height}x{width} too small for a {val_fraction} val split.")
        val, train = (y0, y1, x1 - cut, x1), (y0, y1, x0, x1 - cut)
    else:
        cut = max(int(round(want / (x1 - x0))), min_size)
        if cut >= y1 - y0:
            raise InputError(f"field {height}x{width} too small for a {val_fraction} val split.")
        val, train = (y1 - cut, y1, x0, x1), (y0, y1 - cut, x0, x1)
    out["val"] = [val]
    out["train"] = [train if r == big else r for r in rest]
    check_disjoint(out)
    return out


def check_disjoint(regions: dict[str, list[Rect]]) -> None:
    """Raises `InputError` if rectangles of different splits overlap."""
    items = [(s, r) for s, rects in regions.items() for r in rects]
    for i, (sa, a) in enumerate(items):
        for sb, b in items[i + 1 :]:
            if sa != sb and _subtract(a, b) != [a]:
                raise InputError(f"split regions overlap: {sa} {a} and {sb} {b}.")
