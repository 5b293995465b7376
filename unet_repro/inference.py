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
from .geometry import Geometry, Tile, geometry_of, prediction_tile


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


def _tile_axis(geometry: Geometry, size: int, tile: int) -> AxisTiling:
    step = geometry.step
    extent = geometry.cover(tile, size)
    length = min(tile, extent)
    if length < step and length < extent:
        # Tiles at multiples of `step` that are shorter than `step` would leave gaps: use the next valid size.
        length = min(length + step, extent)
    margin = geometry.tile_for_output(length).margin
    if geometry.tile_for_output(extent).margin != margin:
        raise ValueError(f"this network's context margin depends on the input size ({margin} px for {length}, "
                         f"{geometry.tile_for_output(extent).margin} px for {extent}); overlap-tile prediction needs "
                         f"it fixed")
    stride = length - length % step
    last = extent - length
    origins = (*range(0, last, stride), last) if last else (0,)
    bounds = [0, *((a + b + length) // 2 for a, b in zip(origins[1:], origins)), extent]
    owned = tuple((min(lo, size), min(hi, size)) for lo, hi in zip(bounds, bounds[1:]))
    return AxisTiling(size, extent, length, margin, origins, owned)


def as_tile(model: nn.Module, tile: Tile | int | None, image_size: tuple[int, int]) -> Tile:
    """`tile` as a `Tile`: a `Tile` as it is, an int as the input side, None as `prediction_tile`'s choice."""
    geometry = geometry_of(model)
    if tile is None:
        return prediction_tile(geometry, image_size)
    if isinstance(tile, Tile):
        return tile
    if int(tile) < 1:
        raise ValueError(f"tile must be a positive number of input pixels, got {tile}")
    return geometry.tile(int(tile))


def plan_tiles(model: nn.Module, image_size: tuple[int, int],
               tile: Tile | int | None = None) -> tuple[AxisTiling, AxisTiling]:
    """The tiling of an (H, W) image that `predict_tiled` uses: one `AxisTiling` for the rows, one for the columns.

    `tile`: a `Tile`, an input side, or None for `unet_repro.geometry.prediction_tile`; ValueError if the network
    has no such tile. A tile longer than the image's valid extent along an axis is clipped to it, and a tile shorter
    than 2**depth that would need a neighbour is lengthened by 2**depth (aligned tiles that short could not meet).
    """
    h, w = (int(n) for n in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image must have at least one pixel, got size {(h, w)}")
    output = as_tile(model, tile, (h, w)).output
    geometry = geometry_of(model)
    return _tile_axis(geometry, h, output), _tile_axis(geometry, w, output)


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


def predict_tiled(model: nn.Module, image: np.ndarray, tile: Tile | int | None = None, batch_size: int | None = None,
                  device: torch.device | str | None = None, autocast: bool = False,
                  tta: bool = False) -> np.ndarray:
    """Class probabilities of a whole image by seamless overlap-tile prediction (see `_predict_tiled`).

    With ``tta=True`` the prediction is averaged over the 8 symmetries of the square (4 rotations, each also
    mirrored), each mapped back to the image's orientation; the paper averaged over rotated versions of the input.
    """
    if not tta:
        return _predict_tiled(model, image, tile, batch_size, device, autocast)
    total = None
    for flip in (False, True):
        for k in range(4):
            view = np.rot90(image[:, ::-1] if flip else image, k)
            p = _predict_tiled(model, np.ascontiguousarray(view), tile, batch_size, device, autocast)
            p = np.rot90(p, -k, axes=(-2, -1))
            p = p[..., ::-1] if flip else p
            total = p.astype(np.float64) if total is None else total + p
    return (total / 8).astype(np.float32)


def _mirror_padded(image: np.ndarray, rows: AxisTiling, cols: AxisTiling) -> torch.Tensor:
    """The normalised image mirror-padded to (rows.extent + 2 margin, cols.extent + 2 margin, C), float32.
    Channels last: a window of it is already a channels-last network input (N, C, H, W)."""
    x = normalize(image)
    x = mirror_pad(x, rows.margin, rows.extent - rows.size + rows.margin,
                   cols.margin, cols.extent - cols.size + cols.margin)
    return torch.from_numpy(x) if x.ndim == 3 else torch.from_numpy(x).unsqueeze(-1)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities of logits (N, K, H, W): the sigmoid of a single channel (P(foreground)), else the
    soft-max over the K channels (the paper's pixel-wise soft-max)."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@torch.inference_mode()
def _predict_tiled(model: nn.Module, image: np.ndarray, tile: Tile | int | None = None, batch_size: int | None = None,
                   device: torch.device | str | None = None, autocast: bool = False) -> np.ndarray:
    """Class probabilities of a whole image by seamless overlap-tile prediction.

    Args:
        model: a network with a `unet_repro.geometry.Geometry` (``.geometry``; every network of `unet_repro.models`).
        image: (H, W) or (H, W, C) array; uint8 is scaled with `normalize`, float is used as is (images of other
            intensity rules are normalised by the caller: `unet_repro.training.Trained.predict`).
        tile: a `Tile`, its input side, or None for `unet_repro.geometry.prediction_tile`; see `plan_tiles`.
        batch_size: windows per forward pass (default: `default_batch_size`).
        device: where to run (default: the model's device).
        autocast: bf16 autocast (default off: float32; a trained run passes the precision it decided).

    Returns:
        float32 probabilities: (H, W) P(foreground) for a one-channel network (sigmoid), (K, H, W) for K channels
        (soft-max).

    Guarantee. The image is mirror-padded by the context margin on every side and, on the bottom and right, up to
    a size the network accepts (`one_pass_padding`); every tile's input window starts at a multiple of 2**depth
    there (`plan_tiles`). For a valid-convolution U-Net the result therefore equals one forward pass over that
    padded image, cropped to (H, W), to float rounding, for every tile size and image size: tiles are crops of that
    pass, and where they overlap they agree. For a size-preserving model (``padding="same"``, the baselines) a
    tile has no context and zero padding at its border, so the equality holds when one tile covers the image
    (the default for images up to 560 px at depth 4, 544 at SegNet's depth 5: `prediction_tile`). With smaller
    tiles each tile equals one forward pass over its window of the padded image, each pixel comes from the tile in
    which it lies farthest from a tile border, and seams can remain where tiles meet.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    rows, cols = plan_tiles(model, image.shape[:2], tile)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_size = default_batch_size(device) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    padded = _mirror_padded(image, rows, cols).to(device)  # (H', W', C)
    tiles = list(product(range(len(rows.origins)), range(len(cols.origins))))
    channels = int(getattr(model, "out_channels", 1))
    # On CPU the map is a numpy array from the start (returned without a copy, visible to tracemalloc).
    out = (torch.from_numpy(np.empty((channels, rows.size, cols.size), np.float32)) if device.type == "cpu"
           else torch.empty(channels, rows.size, cols.size, dtype=torch.float32, device=device))
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
                out[:, y0:y1, x0:x1] = probabilities(logits[k:k + 1, :, y0 - y:y1 - y, x0 - x:x1 - x])[0]
    finally:
        model.train(was_training)
    result = out.cpu().numpy()
    return result[0] if channels == 1 else result
