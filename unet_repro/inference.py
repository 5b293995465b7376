"""Overlap-tile prediction (paper, Fig. 2): segment an image of any size with a network whose output is smaller
than its input, by predicting output tiles that each see their full context, mirroring the image at its borders.

Seamless tiling. A network with d 2x2 poolings is equivariant only to shifts by multiples of 2**d (16 px for the
paper's U-Net): a window shifted by any other amount sees another pooling grid and predicts other values. So every
tile here starts at a multiple of 2**d in the mirror-padded image, and neighbouring tiles overlap where the tile
size is not a multiple of 2**d (388 = 4 mod 16: a stride of 384). For a valid-convolution U-Net the result then
equals one forward pass over the whole mirror-padded image (`one_pass_padding`), whatever the tile size: each tile
is a crop of that pass, computed over the same pooling grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import torch
from torch import nn

from .data.intensity import normalize
from .data.tiles import mirror_pad

PAPER_TILE = 388  # the paper's output tile ...
PAPER_CONTEXT = 184  # ... and its 572 - 388 px of context: 92 mirrored or real pixels on each side


# -- geometry ----------------------------------------------------------------------------------------------------

def _step(model: nn.Module) -> int:
    """2**depth: the shifts the network is equivariant to (1 for a model without ``depth``)."""
    return 2 ** int(getattr(model, "depth", 0))


def _input_size(model: nn.Module, n: int) -> int:
    """Input side whose output side is `n`; ValueError if there is none. A model without ``input_size`` is taken
    to be size-preserving with inputs that are multiples of 2**depth."""
    if hasattr(model, "input_size"):
        return model.input_size(n)
    if n <= 0 or n % _step(model):
        raise ValueError(f"tile {n} is not valid for this model: sides must be positive multiples of "
                         f"{_step(model)}")
    return n


def _is_valid_output(model: nn.Module, n: int) -> bool:
    try:
        _input_size(model, n)
    except ValueError:
        return False
    return True


def _margin(model: nn.Module, tile: int) -> int:
    """Context pixels on each side of an output tile of side `tile` (0 for a size-preserving model)."""
    return (_input_size(model, tile) - tile) // 2


def _cover(tile: int, size: int, step: int) -> int:
    """The smallest output side >= `size` that differs from the valid `tile` by a multiple of `step`: valid too,
    since a U-Net's valid sizes are one residue class mod 2**depth."""
    return tile + step * -((tile - size) // step)


def _largest_valid(model: nn.Module, cap: int, step: int) -> int | None:
    # Valid sizes repeat every `step`: the first valid one counting down from `cap` is the largest.
    return next((n for n in range(cap, max(cap - step, 0), -1) if _is_valid_output(model, n)), None)


def default_tile(model: nn.Module, image_size: tuple[int, int], max_tile: int = PAPER_TILE) -> int:
    """Output tile side: the largest valid one up to `max_tile` (388 = the paper's 572 input), shrunk to the smallest
    valid one that covers a smaller image, so a small image costs one small forward pass.

    A size-preserving model (margin 0: ``padding="same"`` and the baselines) sees no context beyond its tile, so
    its cap is the paper's input window instead, ``max_tile + 184`` (560 px at depth 4): a 512 x 512 slice is then
    one forward pass, with no tile borders inside the image.
    """
    step = _step(model)
    largest = _largest_valid(model, max_tile, step)
    if largest is not None and _margin(model, largest) == 0:
        largest = _largest_valid(model, max_tile + PAPER_CONTEXT, step)
    if largest is None:
        raise ValueError(f"no valid output tile of at most {max_tile} px for this model")
    return min(largest, _cover(largest, max(image_size), step))


@dataclass(frozen=True)
class AxisTiling:
    """How one image axis is cut into tiles, in the output frame of the one-pass reference (pixel 0 = the image's
    first pixel; the mirror-padded image starts `margin` pixels before it).

    Attributes:
        size: image pixels along the axis.
        extent: output pixels of the one-pass reference, the smallest valid output size >= size (the same for
            every tile size); the mirror-padded image has ``extent + 2 * margin`` pixels.
        tile: output pixels of each tile (the requested tile, clipped to `extent`).
        margin: context pixels on each side of a tile; a tile's input window has ``tile + 2 * margin`` pixels.
        origins: each tile's first output pixel, which is also its window's first pixel in the mirror-padded
            image: multiples of 2**depth, every ``tile - tile % 2**depth`` pixels and the last one at
            ``extent - tile``.
        owned: for each tile the output pixels [start, stop) it writes, within [0, size): overlaps are split at
            their middle, so every pixel comes from the tile in which it lies farthest from the tile's border.
    """

    size: int
    extent: int
    tile: int
    margin: int
    origins: tuple[int, ...]
    owned: tuple[tuple[int, int], ...]

    @property
    def window(self) -> int:
        """Input pixels of a tile's window."""
        return self.tile + 2 * self.margin


def _tile_axis(model: nn.Module, size: int, tile: int, step: int) -> AxisTiling:
    extent = _cover(tile, size, step)
    length = min(tile, extent)
    if length < step and length < extent:
        # Tiles at multiples of `step` that are shorter than `step` would leave gaps: use the next valid size.
        length = min(length + step, extent)
    margin = _margin(model, length)
    if _margin(model, extent) != margin:
        raise ValueError(f"this model's context margin depends on the input size ({margin} px for {length}, "
                         f"{_margin(model, extent)} px for {extent}); overlap-tile prediction needs it fixed")
    stride = length - length % step
    last = extent - length
    origins = (*range(0, last, stride), last) if last else (0,)
    bounds = [0, *((a + b + length) // 2 for a, b in zip(origins[1:], origins)), extent]
    owned = tuple((min(lo, size), min(hi, size)) for lo, hi in zip(bounds, bounds[1:]))
    return AxisTiling(size, extent, length, margin, origins, owned)


def plan_tiles(model: nn.Module, image_size: tuple[int, int],
               tile: int | None = None) -> tuple[AxisTiling, AxisTiling]:
    """The tiling of an (H, W) image that `predict_tiled` uses: one `AxisTiling` for the rows, one for the columns.

    `tile` is the output tile side (default: `default_tile`); ValueError if the model has no input size for it.
    A tile longer than the image's valid extent along an axis is clipped to it, and a tile shorter than 2**depth
    that would need a neighbour is lengthened by 2**depth (aligned tiles that short could not meet).
    """
    h, w = (int(n) for n in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image must have at least one pixel, got size {(h, w)}")
    tile = default_tile(model, (h, w)) if tile is None else int(tile)
    if tile < 1:
        raise ValueError(f"tile must be a positive number of output pixels, got {tile}")
    _input_size(model, tile)  # ValueError naming the nearest valid tiles
    step = _step(model)
    return _tile_axis(model, h, tile, step), _tile_axis(model, w, tile, step)


def one_pass_padding(model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) mirror padding of an (H, W) image for the one forward pass that `predict_tiled`
    reproduces: the context margin on every side, and on the bottom and right up to the smallest valid size.
    The pass's output, cropped to its first H rows and W columns, is the reference."""
    rows, cols = plan_tiles(model, image_size, tile=None)
    return (rows.margin, rows.extent - rows.size + rows.margin, cols.margin, cols.extent - cols.size + cols.margin)


# -- prediction --------------------------------------------------------------------------------------------------

def default_batch_size(device: torch.device) -> int:
    """Windows per forward pass: 1 on CPU, where one 572 px window's activations stay in cache and a batch of 4
    runs at half the speed (`benchmarks/inference.py`), 4 on an accelerator."""
    return 1 if device.type == "cpu" else 4


def predict_tiled(model: nn.Module, image: np.ndarray, tile: int | None = None, batch_size: int | None = None,
                  device: torch.device | str | None = None, autocast: bool | None = None,
                  tta: bool = False) -> np.ndarray:
    """Foreground probabilities of a whole image by seamless overlap-tile prediction (see `_predict_tiled`).

    With ``tta=True`` the prediction is averaged over the 8 symmetries of the square (4 rotations, each also
    mirrored), each mapped back to the image's orientation; the paper averaged over rotated versions of the input.
    """
    if not tta:
        return _predict_tiled(model, image, tile, batch_size, device, autocast)
    total = np.zeros(image.shape[:2], dtype=np.float64)
    for flip in (False, True):
        for k in range(4):
            view = np.rot90(image[:, ::-1] if flip else image, k)
            p = np.rot90(_predict_tiled(model, np.ascontiguousarray(view), tile, batch_size, device, autocast), -k)
            total += p[:, ::-1] if flip else p
    return (total / 8).astype(np.float32)


def _mirror_padded(image: np.ndarray, rows: AxisTiling, cols: AxisTiling) -> torch.Tensor:
    """The normalised image mirror-padded to (rows.extent + 2 margin, cols.extent + 2 margin, C), float32.
    Channels last: a window of it is already a channels-last network input (N, C, H, W)."""
    x = normalize(image)
    x = mirror_pad(x, rows.margin, rows.extent - rows.size + rows.margin,
                   cols.margin, cols.extent - cols.size + cols.margin)
    return torch.from_numpy(x) if x.ndim == 3 else torch.from_numpy(x).unsqueeze(-1)


@torch.inference_mode()
def _predict_tiled(model: nn.Module, image: np.ndarray, tile: int | None = None, batch_size: int | None = None,
                   device: torch.device | str | None = None, autocast: bool | None = None) -> np.ndarray:
    """Foreground probabilities of a whole image by seamless overlap-tile prediction.

    Args:
        model: a one-output-channel network with ``input_size(n)`` (the input side whose output side is n) and
            ``depth`` (its number of 2x down-samplings); a model without ``input_size`` is treated as
            size-preserving.
        image: (H, W) or (H, W, C) array; uint8 is scaled with `normalize`, float is used as is.
        tile: output tile side (default: `default_tile`); see `plan_tiles`.
        batch_size: windows per forward pass (default: `default_batch_size`).
        device: where to run (default: the model's device).
        autocast: bf16 autocast (default: on for CUDA).

    Returns:
        (H, W) float32 sigmoid probabilities.

    Guarantee. The image is mirror-padded by the context margin on every side and, on the bottom and right, up to
    a size the network accepts (`one_pass_padding`); every tile's input window starts at a multiple of 2**depth
    there (`plan_tiles`). For a valid-convolution U-Net the result therefore equals one forward pass over that
    padded image, cropped to (H, W), to float rounding, for every tile size and image size: tiles are crops of that
    pass, and where they overlap they agree. For a size-preserving model (``padding="same"``, the baselines) a
    tile has no context and zero padding at its border, so the equality holds when one tile covers the image
    (the default for images up to 560 px at depth 4, 544 at SegNet's depth 5: `default_tile`). With smaller tiles
    each tile equals one forward pass over its window of the padded image, each pixel comes from the tile in which
    it lies farthest from a tile border, and seams can remain where tiles meet.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    rows, cols = plan_tiles(model, image.shape[:2], tile)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_size = default_batch_size(device) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    autocast = device.type == "cuda" if autocast is None else autocast

    padded = _mirror_padded(image, rows, cols).to(device)  # (H', W', C)
    tiles = list(product(range(len(rows.origins)), range(len(cols.origins))))
    # On CPU the map is a numpy array from the start (returned without a copy, visible to tracemalloc).
    out = (torch.from_numpy(np.empty((rows.size, cols.size), np.float32)) if device.type == "cpu"
           else torch.empty(rows.size, cols.size, dtype=torch.float32, device=device))
    # Channels-last windows (N, H, W, C in memory) keep the whole network channels-last, about 1.5x faster on CPU
    # (oneDNN); with one channel only explicit strides say so.
    if len(tiles) > 1:
        buffer = padded.new_empty((min(batch_size, len(tiles)), rows.window, cols.window, padded.shape[-1]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start:start + batch_size]
            if len(tiles) == 1:
                inputs = padded[None]  # the window is the whole padded image: no copy
            else:
                inputs = buffer[:len(batch)]
                for k, (i, j) in enumerate(batch):
                    y, x = rows.origins[i], cols.origins[j]
                    inputs[k] = padded[y:y + rows.window, x:x + cols.window]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(inputs.permute(0, 3, 1, 2))
            for k, (i, j) in enumerate(batch):
                (y0, y1), (x0, x1), y, x = rows.owned[i], cols.owned[j], rows.origins[i], cols.origins[j]
                out[y0:y1, x0:x1] = torch.sigmoid(logits[k, 0, y0 - y:y1 - y, x0 - x:x1 - x].float())
    finally:
        model.train(was_training)
    return out.cpu().numpy()
