"""Reading label masks: one rule for every mask file and one for deciding what a set of masks means.

Three kinds of mask, each with its canonical array:

* binary: foreground / background (0/1, 0/255, 0/v; or near-binary lossy files, a JPEG of a 0/255 or 0/1 mask)
  -> (H, W) uint8 in {0, 1};
* instances: each nonzero integer one object (8, 16 or 32-bit PNG or TIFF) -> (H, W) int32, 0 = background, the
  values as in the file;
* classes: a class index per pixel, 0..K-1 -> (H, W) uint8.

Reading one file (`read_mask_file`), with `unet_repro.data.images.read_image_file`: palette files give their
palette *indices*, not colours; a mask has one channel, or RGB colours; float files must hold whole numbers;
negative values are refused; JPEG masks (lossy) are kept as gray values for the lossy rule below.

Reading a set (`read_mask_set`):

* RGB masks: when every RGB mask of the set is gray-valued (R = G = B) they are read as gray; otherwise every RGB
  mask maps each distinct colour of the whole set to one value: black (0, 0, 0) -> 0, the other colours -> 1, 2,
  ... in ascending (R, G, B) order (so the same colour is the same value in every mask). A set of coloured masks
  without black is refused.
* JPEG masks (lossy): binary only: foreground = above the Otsu threshold of the file's gray values (a colour JPEG
  by its luminance); refused unless near-binary (at least `NEAR_BINARY`, 95 %, of the pixels within a quarter of
  the gap of its two levels). Lossy reading is approximate at edges (the 8x8 blocks an edge crosses), and a 0/1
  mask saved at low JPEG quality may have lost its foreground altogether: save masks losslessly.

The kind of a set, unless forced (``kind``, ``n_classes``), is decided from all its masks by the first rule that
applies (one line each, given in the run's first lines):

1. Every mask holds 0 and at most one other value, the same in every mask, or 1 in some and 255 in others (the two
   binary conventions; JPEG masks count as 0/1) -> binary, foreground = nonzero. (Other values in different
   masks, {0, 1} here and {0, 2} there, are refused: one class per image, or objects? Pass --mask-kind.)
2. Every mask with more values is a one-value mask with stray pixels (the values besides 0 and its most frequent
   one cover less than `STRAY_SHARE`, 1 %, of its nonzero pixels, e.g. a 0/1 mask with one pixel of 2) -> refused,
   naming the files and pixel counts: not silently read one way (pass --mask-kind to read it as given).
3. At least `INSTANCES_SHARE` (95 %) of the (mask, nonzero value) pairs are one 8-connected region, and some mask
   holds at least `MIN_OBJECTS` (4) nonzero values -> instances (each value is one object).
4. Fewer than `CLASSES_SHARE` (50 %) of those pairs are one region (most values cover several separate regions) ->
   classes, K = the largest value + 1.
5. Otherwise ambiguous -> refused, naming a file and its values and the flag to pass.

Forced: ``kind="binary"`` (foreground = nonzero; JPEG by the lossy rule), ``"instances"`` (values as they are),
``"classes"`` (K = ``n_classes``, else the largest value + 1; ``n_classes`` alone means classes). JPEG masks are
refused as instances or classes (lossy values cannot be read as labels).

Checks on the set, each refused in one line naming files: no mask has any foreground; every pixel of every mask is
foreground (nothing to tell apart; instance labels may tile the image with touching objects, between which the
separation borders draw the background, unless each mask is one object); a class 0..K-1 never appears, or a value is not below K (classes); values above
the canonical dtype. (The checks against the images, size and "the image given as mask", are made where masks meet
their images: `unet_repro.data.folder`.)

`binarize_mask` is the older rule kept for the PH2 masks as they ship (0/255).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..cells import cell_structure
from ..errors import DataError, UsageError
from .images import LOSSY_SUFFIXES, read_image_file, some_names

KINDS = ("binary", "instances", "classes")
STRAY_SHARE = 0.01
INSTANCES_SHARE = 0.95
CLASSES_SHARE = 0.5
MIN_OBJECTS = 4
NEAR_BINARY = 0.95
MAX_CLASSES = 256  # classes are uint8


def binarize_mask(a: np.ndarray, path: Path | str) -> np.ndarray:
    """A PH2-style mask (or a stack of them) as {0, 1} uint8, foreground = 1: 0/1 masks as they are, other gray
    values thresholded at 127. Kept for the PH2 masks as they ship (0/255); own masks are read by
    `read_mask_set`, which refuses what this would misread (class masks, instance labels, stray values)."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: a mask must hold integers (0/1 or 0/255), got {a.dtype}; save it as 8-bit PNG/TIFF")
    top = int(a.max()) if a.size else 0
    return (a > 0).astype(np.uint8) if top <= 1 else (a > 127).astype(np.uint8)


# -- one file ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawMask:
    """One mask plane as read: ``values`` (H, W) integers, or (H, W, 3) colours of an RGB mask; ``name`` the file
    (``file.tif[k]`` for a page of a stack); ``lossy`` for a JPEG, whose gray values the lossy rule reads."""

    name: str
    values: np.ndarray
    lossy: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[:2]


def read_mask_file(path: Path | str) -> list[RawMask]:
    """The planes of one mask file (one per page of a stack), checked and left as stored; see the module
    docstring."""
    path = Path(path)
    f = read_image_file(path, palette="index")
    lossy = path.suffix.lower() in LOSSY_SUFFIXES
    return [RawMask(name, _plane(plane, name, lossy), lossy) for name, plane in zip(f.names(full=True), f.planes)]


def _plane(a: np.ndarray, name: str, lossy: bool) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] != 3:
        raise DataError(f"{name}: a mask has one channel (or RGB colours), this one {a.shape[2]} channels; save "
                        f"one mask per file")
    if lossy:
        return np.asarray(a if a.ndim == 2 else _luminance(a), np.uint8)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise DataError(f"{name}: a {a.dtype} mask with fractional values (e.g. a probability map); a mask holds "
                            f"whole numbers: save labels or 0/1 as an integer PNG/TIFF")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise DataError(f"{name}: the mask holds negative values (down to {a.min()}); masks hold 0 (background) and "
                        f"positive values")
    return a


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as Pillow's RGB -> L."""
    return np.round(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


# -- the set -------------------------------------------------------------------------------------------------------

@dataclass
class MaskSet:
    """A set of masks read by one rule: ``masks`` canonical (see the module docstring), ``names`` (one per mask),
    ``kind``, ``classes`` (K: 2 for binary, None for instances), ``why`` (the one line that decided the kind),
    ``colours`` (RGB colour -> value of coloured masks, else empty), ``lossy`` (how many were read by the lossy
    rule)."""

    masks: list[np.ndarray]
    names: list[str]
    kind: str
    classes: int | None
    why: str
    colours: dict[tuple[int, ...], int] = field(default_factory=dict)
    lossy: int = 0


def read_mask_set(raw: Sequence[RawMask], kind: str | None = None, n_classes: int | None = None) -> MaskSet:
    """The canonical masks of a whole set, its kind decided (or forced) by the rules of the module docstring;
    `DataError` naming the files for a set that cannot be read with certainty."""
    kind = _check_kind(kind, n_classes)
    if not raw:
        raise DataError("no masks to read")
    names = [r.name for r in raw]
    values, colours = _colour_values(raw)
    lossy = [r.lossy for r in raw]
    if any(lossy) and kind in ("instances", "classes"):
        bad = [n for n, lo in zip(names, lossy) if lo]
        raise DataError(f"{some_names(bad)}: JPEG masks are lossy and cannot be read as {kind}; save them as PNG or "
                        f"TIFF")
    values = [_lossy_binary(v, n) if lo else v for v, n, lo in zip(values, names, lossy)]
    hists = [_histogram(v) for v in values]
    if kind is None:
        kind, why = _decide(values, hists, names, lossy)
    else:
        why = f"as given (--mask-kind {kind}" + (f", --classes {n_classes})" if n_classes else ")")
    if colours and kind != "binary" and any(r.values.ndim == 2 for r in raw):
        gray = next(r.name for r in raw if r.values.ndim == 2)
        coloured = next(r.name for r in raw if r.values.ndim == 3)
        raise DataError(f"the masks mix coloured RGB ({coloured}) and gray ({gray}) files: their values cannot be "
                        f"matched as {kind}; save every mask one way")
    masks, k = _canonical(values, hists, names, kind, n_classes)
    _check_set(masks, hists, names, kind, k)
    return MaskSet(masks, names, kind, k, why, colours, sum(lossy))


def _check_kind(kind: str | None, n_classes: int | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--mask-kind {kind} is not a mask kind; choose one of {', '.join(KINDS)}")
    if n_classes is not None:
        if not 2 <= n_classes <= MAX_CLASSES:
            raise UsageError(f"--classes {n_classes} must be between 2 and {MAX_CLASSES}")
        if kind is None:
            return "classes"
        if kind == "instances" or (kind == "binary" and n_classes != 2):
            raise UsageError(f"--classes {n_classes} does not go with --mask-kind {kind}; --classes is for "
                             f"--mask-kind classes")
    return kind


def _colour_values(raw: Sequence[RawMask]) -> tuple[list[np.ndarray], dict[tuple[int, ...], int]]:
    """Every mask as 2-D values: gray-valued RGB sets as gray, coloured ones through one colour table."""
    rgb = [r for r in raw if r.values.ndim == 3 and not r.lossy]
    if all(_gray_valued(r.values) for r in rgb):
        return [r.values[..., 0] if r.values.ndim == 3 else r.values for r in raw], {}
    packed = {r.name: _pack(r.values) for r in rgb}
    table = np.unique(np.concatenate([np.unique(p) for p in packed.values()]))
    if table[0] != 0:
        raise DataError(f"the coloured masks ({some_names([r.name for r in rgb])}) hold no black (0, 0, 0) pixel; "
                        f"black is the background of coloured masks: save the background black")
    colours = {_unpack(c): i for i, c in enumerate(table.tolist())}
    values = [np.searchsorted(table, packed[r.name]).astype(np.int32) if r.name in packed else r.values for r in raw]
    return values, colours


def _gray_valued(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) colours -> (H, W) int64 that sorts as (R, G, B)."""
    c = rgb.astype(np.int64)
    return (c[..., 0] << 32) | (c[..., 1] << 16) | c[..., 2]


def _unpack(c: int) -> tuple[int, int, int]:
    return (c >> 32) & 0xFFFF, (c >> 16) & 0xFFFF, c & 0xFFFF


def _otsu(gray: np.ndarray) -> int:
    """Otsu's threshold of 8-bit values: foreground = gray > t (the first t of largest between-class variance)."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(hist.size, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    total, mean_total = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_total * w0 - m0 * total) ** 2 / (w0 * w1)
    between[(w0 == 0) | (w1 == 0)] = -1
    return int(np.argmax(between))


def _lossy_binary(gray: np.ndarray, name: str) -> np.ndarray:
    """The lossy rule: {0, 1} uint8, foreground above the Otsu threshold; `DataError` unless near-binary."""
    if gray.min() == gray.max():
        return (gray > 0).astype(np.uint8)
    t = _otsu(gray)
    low, high = gray[gray <= t], gray[gray > t]
    lo, hi = int(np.bincount(low).argmax()), int(np.bincount(high).argmax())
    reach = max(1, (hi - lo) // 4)
    clean = float(((np.abs(gray.astype(np.int16) - lo) <= reach) | (np.abs(gray.astype(np.int16) - hi) <= reach))
                  .mean())
    if clean < NEAR_BINARY:
        raise DataError(f"{name}: a JPEG mask must be near-binary (two levels), but only {clean:.0%} of its pixels lie "
                        f"near its levels {lo} and {hi}; save masks as PNG or TIFF (JPEG is lossy)")
    return (gray > t).astype(np.uint8)


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero values present and their pixel counts."""
    if values.dtype in (np.uint8, np.uint16):
        counts = np.bincount(values.ravel())
        v = np.flatnonzero(counts)
        v = v[v > 0]
        return v, counts[v]
    v, counts = np.unique(values, return_counts=True)
    keep = v != 0
    return v[keep], counts[keep]


def values_text(values: Sequence[int] | np.ndarray, limit: int = 6) -> str:
    """'{0, 1, 2}' or '{0, 1, 2, ..., 200} (201 values)'."""
    v = sorted(int(x) for x in values)
    if len(v) <= limit:
        return "{" + ", ".join(map(str, v)) + "}"
    return "{" + ", ".join(map(str, v[:3])) + f", ..., {v[-1]}}} ({len(v)} values)"


def _decide(values: list[np.ndarray], hists: list, names: list[str], lossy: list[bool]) -> tuple[str, str]:
    """The kind of a set by rules 1-5 of the module docstring, and the line that says why."""
    counts = [len(v) for v, _ in hists]
    if max(counts) <= 1:
        singles = Counter(int(v[0]) for (v, _), lo in zip(hists, lossy) if len(v) and not lo)
        if set(singles) == {1, 255}:
            return "binary", "every mask holds 0 and one other value, 1 or 255 (the two binary conventions)"
        if len(singles) > 1:
            (a, n_a), (b, n_b) = singles.most_common(2)
            first = {x: next(names[i] for i, (v, _) in enumerate(hists) if len(v) and v[0] == x and not lossy[i])
                     for x in (a, b)}
            raise DataError(f"the masks hold 0 and one other value, but not the same one: {{0, {a}}} in {first[a]} "
                            f"({n_a} mask(s)), {{0, {b}}} in {first[b]} ({n_b})"
                            + (f" and {len(singles) - 2} more values" if len(singles) > 2 else "")
                            + "; pass --mask-kind binary (foreground = nonzero) or --mask-kind classes")
        value = next(iter(singles), 1)
        return "binary", f"every mask holds 0 and at most one other value, {value}"
    multi = [i for i, n in enumerate(counts) if n > 1]
    stray = [i for i in multi if _stray_pixels(hists[i]) < STRAY_SHARE * hists[i][1].sum()]
    if len(stray) == len(multi):
        i = stray[0]
        v, c = hists[i]
        main = int(v[np.argmax(c)])
        extra = {int(x): int(n) for x, n in zip(v, c) if x != main}
        others = [names[j] for j in stray[1:]]
        raise DataError(f"{names[i]} is a 0/{main} mask except for "
                        + ", ".join(f"{n} pixel(s) of value {x}" for x, n in list(extra.items())[:3])
                        + (f" (so are {some_names(others)})" if others else "")
                        + "; stray values are not read silently either way: fix the mask(s), or pass --mask-kind "
                          "binary (foreground = nonzero) or --mask-kind classes")
    pairs = single = 0
    for v in values:
        n, s = _one_region_values(v)
        pairs, single = pairs + n, single + s
    share = single / pairs
    top = int(np.argmax(counts))
    if share >= INSTANCES_SHARE and counts[top] >= MIN_OBJECTS:
        return "instances", (f"each nonzero value is one connected region ({share:.0%} of {pairs}) and masks hold "
                             f"up to {counts[top]} of them")
    if share < CLASSES_SHARE:
        return "classes", (f"most values cover several separate regions ({1 - share:.0%} of {pairs} "
                           f"(mask, value) pairs), as classes do")
    example = multi[0]
    raise DataError(f"{names[example]} holds values {values_text([0, *hists[example][0]])} (classes or instances? "
                    f"{share:.0%} of the values in the {len(values)} masks are one connected region, "
                    f"{max(counts)} values at most in a mask); pass --mask-kind classes or --mask-kind instances")


def _stray_pixels(hist: tuple[np.ndarray, np.ndarray]) -> int:
    """Pixels of a mask's nonzero values other than its most frequent one."""
    _, c = hist
    return int(c.sum() - c.max())


def _one_region_values(values: np.ndarray) -> tuple[int, int]:
    """(nonzero values, how many of them are one 8-connected region) of one mask."""
    if values.dtype in (np.uint8, np.uint16):
        lab = values
    else:
        nz = np.unique(values)
        nz = nz[nz != 0]
        lab = np.where(values == 0, 0, np.searchsorted(nz, values) + 1)
    structure = cell_structure(8)
    n = single = 0
    for i, box in enumerate(ndi.find_objects(lab)):
        if box is None:
            continue
        n += 1
        single += ndi.label(lab[box] == i + 1, structure=structure)[1] == 1
    return n, single


def _canonical(values: list[np.ndarray], hists: list, names: list[str], kind: str, n_classes: int | None
               ) -> tuple[list[np.ndarray], int | None]:
    if kind == "binary":
        return [(v != 0).astype(np.uint8) for v in values], 2
    top = max((int(v.max()) if len(v) else 0) for v, _ in hists)
    if kind == "instances":
        if top > np.iinfo(np.int32).max:
            i = next(i for i, (v, _) in enumerate(hists) if len(v) and int(v.max()) == top)
            raise DataError(f"{names[i]}: instance label {top} does not fit 32-bit labels; relabel the objects 1..N")
        return [v.astype(np.int32) for v in values], None
    k = n_classes or top + 1
    if top >= k:
        i = next(i for i, (v, _) in enumerate(hists) if len(v) and int(v.max()) >= k)
        raise DataError(f"{names[i]} holds value {int(hists[i][0].max())}, not a class of 0..{k - 1} (--classes {k}); "
                        f"class masks hold 0..K-1")
    if k > MAX_CLASSES:
        raise DataError(f"the masks hold values up to {top}: more than {MAX_CLASSES} classes; class masks hold "
                        f"0..K-1 (or pass --mask-kind instances)")
    return [v.astype(np.uint8) for v in values], k


def _check_set(masks: list[np.ndarray], hists: list, names: list[str], kind: str, k: int | None) -> None:
    pixels = sum(m.size for m in masks)
    foreground = sum(int(c.sum()) for _, c in hists)
    if kind in ("binary", "instances"):
        what = "foreground" if kind == "binary" else "object"
        if foreground == 0:
            raise DataError(f"none of the {len(masks)} masks ({some_names(names)}) has a {what} (nonzero) pixel; the "
                            f"network needs foreground to learn from: check the masks folder")
        # Instance labels may tile the whole image (touching cells, as in epithelia or EM): the separation borders
        # drawn between them give the background; only one object filling everything leaves nothing to tell apart.
        single = all(len(c) <= 1 for _, c in hists)
        if foreground == pixels and (kind == "binary" or single):
            raise DataError(f"every pixel of the {len(masks)} masks ({some_names(names)}) is {what} (nonzero): nothing "
                            f"to tell apart; background must be 0")
        return
    present = set()
    for m in masks:
        present.update(np.flatnonzero(np.bincount(m.ravel(), minlength=k)).tolist())
    missing = sorted(set(range(k)) - present)
    if missing:
        raise DataError(f"class(es) {values_text(missing)} of 0..{k - 1} never appear in the {len(masks)} masks "
                        f"({some_names(names)}; values found {values_text(sorted(present))}); class masks hold 0..K-1 "
                        f"(class c as value c), each class somewhere: relabel them, pass --classes K, or for binary "
                        f"masks with soft (anti-aliased) edges --mask-kind binary")


# -- what was read ---------------------------------------------------------------------------------------------------

def describe_masks(ms: MaskSet) -> list[str]:
    """The run's first lines about the masks: the kind and why, and the foreground, objects or classes."""
    head = {"binary": "binary", "instances": "instances", "classes": f"{ms.classes} classes"}[ms.kind]
    lines = [f"masks: {head} ({ms.why})"]
    if ms.kind == "binary":
        fractions = [float(m.mean()) for m in ms.masks]
        total = sum(int(m.sum()) for m in ms.masks) / sum(m.size for m in ms.masks)
        lines.append(f"masks: foreground {total:.1%} of all pixels (per mask min {min(fractions):.1%}, median "
                     f"{float(np.median(fractions)):.1%}, max {max(fractions):.1%})")
    elif ms.kind == "instances":
        objects = [len(_histogram(m)[0]) for m in ms.masks]
        total = sum(int((m != 0).sum()) for m in ms.masks) / sum(m.size for m in ms.masks)
        lines.append(f"masks: objects per image min {min(objects)}, median {float(np.median(objects)):g}, max "
                     f"{max(objects)} ({sum(objects)} in all); foreground {total:.1%} of all pixels")
    else:
        counts = sum(np.bincount(m.ravel(), minlength=ms.classes) for m in ms.masks)
        lines.append("masks: class pixel fractions " + ", ".join(f"{c}: {n / counts.sum():.1%}"
                                                                for c, n in enumerate(counts)))
    if ms.colours:
        lines.append("masks: coloured, read as " + ", ".join(f"{rgb} -> {v}" for rgb, v in list(ms.colours.items())[:6])
                     + (f" and {len(ms.colours) - 6} more colours" if len(ms.colours) > 6 else ""))
    if ms.lossy:
        lines.append(f"masks: {ms.lossy} JPEG mask(s) read by the lossy rule (binary, above the Otsu threshold)")
    return lines
