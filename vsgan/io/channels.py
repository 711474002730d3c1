"""Channels matched by name: natural order, numbers by value, one-to-one or an error.

A model names its channels (``phase_contrast_z00`` .. ``phase_contrast_z12``, ``bf_focus``);
files name theirs (their stems, OME / ImageJ labels, zarr OMERO labels). This module maps the
one onto the other, never by position or by text order:

- names are compared as tokens: case and punctuation are ignored, runs of digits are numbers
  compared by value (``z0`` is ``z00``, ``z2`` comes before ``z10``);
- a name equal (as tokens) to a model channel takes it; otherwise the parts that tell the
  channels apart are compared, once the prefix and suffix every name shares are stripped, so
  ``phase_z3.tif`` finds ``phase_contrast_z03`` and ``field7_bf_focus.tif`` finds ``bf_focus``;
- every model channel must find exactly one name and no name two channels; otherwise
  `ChannelMatchError` lists the model's channels and the names given.

Example:
>>> natural_sorted(["z10", "z2", "z5"])
['z2', 'z5', 'z10']
>>> match_channels(["ph_z00", "ph_z02", "ph_z10"], ["Ph_Z10.tif", "ph_z2", "ph-z0"])
[2, 1, 0]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from vsgan.errors import InputError

__all__ = [
    "ChannelMatchError",
    "channel_key",
    "match_channels",
    "natural_key",
    "natural_sorted",
    "stem",
]

_TOKEN = re.compile(r"\d+|[a-z]+")
_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".npy", ".h5", ".hdf5", ".zarr")


class ChannelMatchError(InputError):
    """Names that do not map one-to-one onto a model's channels."""


def stem(name: str | Path) -> str:
    """A file's name without folders and its image suffix (``a/b.ome.tif`` -> ``b``)."""
    text = Path(str(name)).name
    lower = text.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix):
            return text[: -len(suffix)]
    return text


def channel_key(name: str | Path) -> tuple[int | str, ...]:
    """Tokens of a name: lower-case words and numbers (by value); punctuation dropped.

    Example:
    >>> channel_key("Phase_Z03.tif") == channel_key("phase-z3")
    True
    """
    return tuple(int(t) if t.isdigit() else t for t in _TOKEN.findall(stem(name).lower()))


def natural_key(name: str | Path) -> tuple:
    """A sort key putting ``z2`` before ``z10`` (numbers by value, text case-insensitively)."""
    return tuple((0, t, "") if isinstance(t, int) else (1, 0, t) for t in channel_key(name)) + (
        (2, 0, str(name)),
    )


def natural_sorted(names):
    """`names` sorted naturally (see `natural_key`)."""
    return sorted(names, key=natural_key)


def _strip_common(keys: list[tuple]) -> list[tuple]:
    """The keys without the tokens they all share at the start and at the end."""
    if len(keys) < 2:
        return keys
    shortest = min(len(k) for k in keys)
    head = 0
    while head < shortest and len({k[head] for k in keys}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({k[len(k) - 1 - tail] for k in keys}) == 1:
        tail += 1
    return [k[head : len(k) - tail] for k in keys]


def _one_to_one(wanted: list[tuple], given: list[tuple]) -> list[int] | None:
    index: dict[tuple, list[int]] = {}
    for i, k in enumerate(given):
        index.setdefault(k, []).append(i)
    out = []
    for k in wanted:
        hits = index.get(k, [])
        if len(hits) != 1:
            return None
        out.append(hits[0])
    return out if len(set(out)) == len(out) else None


def _signature(key: tuple) -> tuple:
    return tuple("#" if isinstance(t, int) else t for t in key)


def match_channels(
    wanted: Sequence[str],
    given: Sequence[str | Path],
    *,
    exact: bool = False,
    where: str = "",
) -> list[int]:
    """For each wanted (model) channel, the index of the given name that feeds it.

    Args:
        wanted: the model's channel names, in model order.
        given: file names, paths or channel labels.
        exact: every given name must be used (a file list); otherwise names left over are
            ignored (a folder may also hold the targets).
        where: what the names come from, for the error message.

    Returns:
        ``idx`` with ``given[idx[k]]`` feeding channel ``wanted[k]``.

    Raises:
        ChannelMatchError: naming the model's channels and the given names.
    """
    wanted_keys = [channel_key(w) for w in wanted]
    given_keys = [channel_key(g) for g in given]
    found = _one_to_one(wanted_keys, given_keys)
    if found is None and len(wanted) == 1 and len(given) == 1:
        found = [0]  # one channel, one file: nothing to confuse
    if found is None and len(wanted) > 1:
        core = _strip_common(wanted_keys)
        # Try every name, then groups that look alike (the same words, or the same first
        # word): a folder of phase_z0 .. phase_z12 beside dapi.tif.
        groups: list[list[int]] = [list(range(len(given)))]
        by_sig: dict[tuple, list[int]] = {}
        by_first: dict[object, list[int]] = {}
        head = 0  # tokens every given name starts with (a field prefix such as "w1_")
        while (
            len(given_keys) > 1
            and all(len(k) > head + 1 for k in given_keys)
            and len({k[head] for k in given_keys}) == 1
        ):
            head += 1
        for i, k in enumerate(given_keys):
            by_sig.setdefault(_signature(k), []).append(i)
            by_first.setdefault(k[head : head + 1], []).append(i)
        groups += list(by_sig.values()) + list(by_first.values())
        for group in groups:
            if len(group) != len(wanted):
                continue
            got = _one_to_one(core, _strip_common([given_keys[i] for i in group]))
            if got is not None:
                found = [group[i] for i in got]
                break
    if found is not None and (not exact or len(found) == len(given)):
        return found
    shown = [Path(str(g)).name for g in given]
    raise ChannelMatchError(
        f"{where + ': ' if where else ''}the names {shown} do not map one-to-one onto the "
        f"model's channels {list(wanted)}. Fix: name one file (or channel) per model channel "
        "after it (case, punctuation and leading zeros do not matter, e.g. z3 = z03), or give "
        "the names of a stacked file's channels in order with --channels a,b,c."
    )
