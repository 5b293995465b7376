"""The size arithmetic of tiled networks, in one place: which input sides a network accepts, what output side each
gives, and the tile rules for training and for prediction.

Every network of `unet_repro.models` has a `Geometry`: ``depth`` 2x down-samplings and ``shrink`` pixels lost by
each block of convolutions (4 for the paper's two unpadded 3x3 convolutions, 0 for padded ones). An input side n is
valid when every down-sampling sees an even map; its output side is

    n -> (n - shrink) / 2 -> ... (depth times) -> - shrink -> (x 2 - shrink) (depth times)

so the paper's U-Net (depth 4, shrink 4) maps 572 to 388, and a size-preserving network (shrink 0) maps every
multiple of 2**depth to itself. Valid sides repeat every 2**depth pixels.

A `Tile` is one square window of a network: its ``input`` side, its ``output`` side and the ``margin`` of context
on each side (92 px for the paper's 572 -> 388). `tile` means a `Tile` (or, as a flag or a config value, its input
side) everywhere in the package.

The tile rules:

* training (`training_tile`): the paper's 572 input for the valid U-Net, or for images no larger than its 388 output
  the smallest input whose output covers the whole image; 512 (or the smallest valid side covering a smaller image)
  for size-preserving networks.
* prediction (`prediction_tile`): output tiles of the paper's 388 px for the valid U-Net, shrunk to the smallest
  valid tile covering a smaller image; for size-preserving networks, which see no context beyond their window, the
  paper's whole input window (388 + 184 = 572, i.e. 560 px at depth 4), so that a 512 x 512 image is one pass.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

# The paper's tile: 572 px in, 388 px out, 92 px of context on each side.
PAPER_INPUT = 572
PAPER_OUTPUT = 388
# The largest training tile the rule picks for size-preserving networks.
MAX_TRAINING_SIDE_SAME = 512


def output_side(n: int, depth: int, shrink: int) -> Optional[int]:
    """The output side of input side `n` for `depth` 2x down-samplings and `shrink` pixels lost per convolution
    block, or None when a down-sampling would see an odd or empty map: the arithmetic of the module docstring, in
    the one form that `torch.jit.script` also compiles (the networks check their inputs with it)."""
    for _ in range(depth):
        n = n - shrink
        if n <= 0 or n % 2 != 0:
            return None
        n = n // 2
    n = n - shrink
    for _ in range(depth):
        n = 2 * n - shrink
    if n > 0:
        return n
    return None


@dataclass(frozen=True)
class Tile:
    """A square window of a tiled network: ``input`` pixels in, ``output`` pixels out (centred)."""

    input: int
    output: int

    @property
    def margin(self) -> int:
        """Context pixels on each side of the output: ``(input - output) / 2``."""
        return (self.input - self.output) // 2


@dataclass(frozen=True)
class Geometry:
    """The sides a network accepts: ``depth`` 2x down-samplings, ``shrink`` pixels lost per convolution block.

    ``name`` only words error messages ("this U-Net (valid padding, depth 4)").
    """

    depth: int
    shrink: int = 0
    name: str = "network"

    @property
    def step(self) -> int:
        """2**depth: valid sides repeat with this period, and the network is equivariant to shifts by it."""
        return 2 ** self.depth

    def output_or_none(self, n: int) -> int | None:
        """The output side for input side `n`, or None when a down-sampling would see an odd or empty map."""
        return output_side(int(n), self.depth, self.shrink)

    def output_size(self, n: int) -> int:
        """Output side for input side `n`; ValueError naming the nearest valid input sides."""
        out = self.output_or_none(n)
        if out is not None:
            return out
        n = int(n)
        below = next((m for m in range(n - 1, 0, -1) if self.output_or_none(m)), None)
        above = next(m for m in itertools.count(n + 1) if self.output_or_none(m))
        if below is None:
            raise ValueError(f"input size {n} is too small for this {self.name}; the smallest valid size is {above}")
        raise ValueError(f"input size {n} is not valid for this {self.name}: every 2x down-sampling must see an even "
                         f"map; nearest valid sizes are {below} and {above}")

    def input_size(self, n: int) -> int:
        """The input side whose output side is exactly `n`; ValueError naming the nearest valid output sides."""
        m = float(n)
        for _ in range(self.depth):
            m = (m + self.shrink) / 2
        m += self.shrink
        for _ in range(self.depth):
            m = 2 * m + self.shrink
        if m == int(m) and self.output_or_none(int(m)) == n:
            return int(m)
        outputs = [o for o in (self.output_or_none(i) for i in range(1, int(m) + 2 ** (self.depth + 4))) if o]
        below = max((o for o in outputs if o < n), default=None)
        above = min((o for o in outputs if o > n), default=None)
        raise ValueError(f"no input size gives output size {n} for this {self.name}; nearest valid output sizes are "
                         f"{below} and {above}")

    def is_valid_output(self, n: int) -> bool:
        try:
            self.input_size(n)
        except ValueError:
            return False
        return True

    def tile(self, input: int) -> Tile:
        """The `Tile` of input side `input`; ValueError naming the nearest valid sides."""
        return Tile(int(input), self.output_size(input))

    def tile_for_output(self, output: int) -> Tile:
        """The `Tile` of output side `output`; ValueError naming the nearest valid output sides."""
        return Tile(self.input_size(output), int(output))

    def largest_output(self, cap: int) -> int | None:
        """The largest valid output side <= `cap` (valid sides repeat every `step`, so the first one counting down
        from `cap` within one period is it)."""
        return next((n for n in range(cap, max(cap - self.step, 0), -1) if self.is_valid_output(n)), None)

    def cover(self, tile_output: int, size: int) -> int:
        """The smallest output side >= `size` that differs from the valid `tile_output` by a multiple of `step`:
        valid too, since a network's valid output sides are one residue class mod 2**depth."""
        return tile_output + self.step * -((tile_output - size) // self.step)


def geometry_of(model: object) -> Geometry:
    """The `Geometry` of a network (every network of `unet_repro.models` carries one as ``.geometry``)."""
    geometry = getattr(model, "geometry", None)
    if not isinstance(geometry, Geometry):
        raise TypeError(f"{type(model).__name__} has no Geometry (.geometry); networks used with tiles must say "
                        f"which input sides they accept")
    return geometry


def training_tile(geometry: Geometry, image_shape: tuple[int, ...]) -> Tile:
    """The tile rule for training on images of `image_shape` (H, W[, C]): see the module docstring."""
    side = max(image_shape[:2])
    cap = MAX_TRAINING_SIDE_SAME if geometry.shrink == 0 else PAPER_INPUT
    largest_input = next((n for n in range(cap, 0, -1) if geometry.output_or_none(n)), None)
    if largest_input is None:
        smallest = next(n for n in itertools.count(cap) if geometry.output_or_none(n))
        raise ValueError(f"this {geometry.name} has no input tile of at most {cap} px (its smallest is {smallest} px)")
    largest = geometry.output_size(largest_input)
    if side <= largest:
        out = next(n for n in itertools.count(side) if geometry.is_valid_output(n))
        return geometry.tile_for_output(out)
    return geometry.tile_for_output(largest)


def prediction_tile(geometry: Geometry, image_size: tuple[int, int], max_output: int = PAPER_OUTPUT) -> Tile:
    """The tile rule for predicting an (H, W) image: see the module docstring."""
    largest = geometry.largest_output(max_output)
    if largest is not None and geometry.tile_for_output(largest).margin == 0:
        largest = geometry.largest_output(max_output + PAPER_INPUT - PAPER_OUTPUT)
    if largest is None:
        raise ValueError(f"no valid output tile of at most {max_output} px for this {geometry.name}")
    return geometry.tile_for_output(min(largest, geometry.cover(largest, max(image_size))))


__all__ = ["Geometry", "PAPER_INPUT", "PAPER_OUTPUT", "Tile", "geometry_of", "output_side", "prediction_tile",
           "training_tile"]
