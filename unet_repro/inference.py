"""Overlap-tile prediction (paper, Fig. 2): segment an image of any size with a network whose output is smaller
than its input, by predicting output tiles that each see their full context, mirroring the image at its borders."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .data.isbi import mirror_pad, normalize


def default_tile(model: nn.Module, image_size: tuple[int, int], max_tile: int = 388) -> int:
    """Output tile side: the largest valid one up to `max_tile` (388 = the paper's 572 input), shrunk to the smallest
    valid one that covers a smaller image, so a small image costs one small forward pass."""
    if not hasattr(model, "input_size"):
        return max_tile
    valid = [o for o in range(1, max(max_tile, max(image_size)) + 1) if _is_valid_output(model, o)]
    covering = [o for o in valid if o >= max(image_size)]
    return min(covering) if covering and min(covering) <= max_tile else max(o for o in valid if o <= max_tile)


def _is_valid_output(model: nn.Module, n: int) -> bool:
    try:
        model.input_size(n)
    except ValueError:
        return False
    return True


def predict_tiled(model: nn.Module, image: np.ndarray, tile: int | None = None, batch_size: int = 4,
                  device: torch.device | str | None = None, autocast: bool | None = None,
                  tta: bool = False) -> np.ndarray:
    """Foreground probabilities of a whole image by overlap-tile prediction (see `_predict_tiled`).

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


@torch.inference_mode()
def _predict_tiled(model: nn.Module, image: np.ndarray, tile: int | None = None, batch_size: int = 4,
                   device: torch.device | str | None = None, autocast: bool | None = None) -> np.ndarray:
    """Foreground probabilities of a whole image by overlap-tile prediction.

    Args:
        model: a one-output-channel network with ``input_size(n)`` (the input side whose output side is n); a model
            without it is treated as size-preserving.
        image: (H, W) or (H, W, C) array; uint8 is scaled with `normalize`, float is used as is.
        tile: output tile side (default: `default_tile`).
        batch_size: tiles per forward pass.
        device: where to run (default: the model's device).
        autocast: bf16 autocast (default: on for CUDA).

    Returns:
        (H, W) float32 sigmoid probabilities. The image is mirror-padded by the model's context margin on every side
        and up to a whole number of tiles; each output tile is predicted from its own input window and the stitched
        map is cropped back to (H, W). When one tile covers the image, the result equals one forward pass on the
        mirror-padded image.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[:2]
    tile = tile or default_tile(model, (h, w))
    tile_in = model.input_size(tile) if hasattr(model, "input_size") else tile
    margin = (tile_in - tile) // 2
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    x = normalize(image)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # (C, H, W)
    padded = mirror_pad(x.transpose(1, 2, 0), margin, margin + ny * tile - h, margin, margin + nx * tile - w)
    padded = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))

    device = torch.device(device) if device is not None else next(model.parameters()).device
    autocast = device.type == "cuda" if autocast is None else autocast
    was_training = model.training
    model.eval()
    out = np.empty((ny * tile, nx * tile), dtype=np.float32)
    corners = [(i * tile, j * tile) for i in range(ny) for j in range(nx)]
    try:
        for start in range(0, len(corners), batch_size):
            batch = corners[start:start + batch_size]
            inputs = torch.stack([padded[:, y:y + tile_in, x0:x0 + tile_in] for y, x0 in batch]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(inputs)
            probs = torch.sigmoid(logits[:, 0].float()).cpu().numpy()
            for (y, x0), p in zip(batch, probs):
                out[y:y + tile, x0:x0 + tile] = p
    finally:
        model.train(was_training)
    return out[:h, :w]
