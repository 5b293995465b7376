import itertools

import numpy as np
import pytest
import torch

from unet_repro.data import mirror_pad, normalize
from unet_repro.geometry import Tile, prediction_tile
from unet_repro.inference import one_pass_padding, plan_tiles, predict_tiled
from unet_repro.models import SegNet, UNet, UNetSame

# Random networks' logits reach +-20 and their float32 rounding depends on the convolution algorithm (window size,
# memory layout): same-grid results agree to about 1e-5 in probability. A tile off the pooling grid differs by >0.1.
ATOL = 5e-5


@pytest.fixture(scope="module")
def nets() -> dict[int, UNet]:
    """Valid-convolution U-Nets of depth 2, 3 and 4 (the paper's depth), narrow and random."""
    torch.manual_seed(0)
    return {len(w) - 1: UNet(widths=w, dropout=0.5).eval() for w in [(4, 8, 16), (4, 8, 16, 32), (4, 8, 16, 32, 64)]}


@pytest.fixture(scope="module")
def model(nets) -> UNet:
    return nets[4]


def out(model: torch.nn.Module, n: int | None) -> Tile | None:
    """The tile of output side `n` (the cases below are written in output sides, as the paper's 388)."""
    return None if n is None else model.geometry.tile_for_output(n)


def default_tile(model: torch.nn.Module, size: tuple[int, int]) -> int:
    return prediction_tile(model.geometry, size).output


def random_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def is_valid_output(model: torch.nn.Module, n: int) -> bool:
    try:
        model.input_size(n)
    except ValueError:
        return False
    return True


def forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Sigmoid of one forward pass over an (H, W) float image: (H', W')."""
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(np.ascontiguousarray(x))[None, None]))[0, 0].numpy()


def one_pass(model: UNet, image: np.ndarray) -> np.ndarray:
    """The reference, built without `unet_repro.inference`: the whole image mirror-padded by the context margin on
    every side and, on the bottom and right, up to the smallest valid output size; one forward pass; crop."""
    h, w = image.shape
    eh, ew = (next(o for o in itertools.count(n) if is_valid_output(model, o)) for n in (h, w))
    margin = (model.input_size(eh) - eh) // 2
    return forward(model, mirror_pad(normalize(image), margin, margin + eh - h, margin, margin + ew - w))[:h, :w]


_references: dict[tuple[int, tuple[int, int]], np.ndarray] = {}


def reference(nets, depth: int, shape: tuple[int, int]) -> np.ndarray:
    if (depth, shape) not in _references:
        _references[depth, shape] = one_pass(nets[depth], random_image(shape))
    return _references[depth, shape]


# (depth, image shape, tiles): images smaller than a tile, exactly a tile, non-square, prime-sized, an ISBI slice;
# output tiles from the smallest valid one up; None = the prediction tile rule.
CASES = [
    (4, (1, 1), [4, 388]),
    (4, (3, 5), [4, 20]),
    (4, (20, 20), [4, 20, 36]),
    (4, (52, 52), [20, 36, 52, 388]),
    (4, (100, 37), [4, 20, 52, 100, None]),
    (4, (127, 131), [20, 36, 68, 132, None]),
    (4, (512, 512), [100, 196, 388, None]),
    (3, (61, 90), [4, 12, 28, 44, None]),
    (3, (131, 17), [12, 36, None]),
    (2, (61, 90), [4, 8, 24, None]),
    (2, (29, 7), [4, 12, None]),
]


@pytest.mark.parametrize("depth, shape, tile",
                         [(d, s, t) for d, s, tiles in CASES for t in tiles],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_tiled_equals_one_pass_over_the_mirrored_image(nets, depth, shape, tile):
    p = predict_tiled(nets[depth], random_image(shape), tile=out(nets[depth], tile), batch_size=3)
    assert p.shape == shape and p.dtype == np.float32
    np.testing.assert_allclose(p, reference(nets, depth, shape), rtol=0, atol=ATOL)


def test_one_pass_padding_matches_the_reference(model):
    assert one_pass_padding(model, (512, 512)) == (92, 96, 92, 96)  # 516 = the smallest valid output >= 512
    assert one_pass_padding(model, (3, 30)) == (92, 93, 92, 98)  # outputs 4 and 36


@pytest.mark.parametrize("depth, size, tile", [(d, s, t) for d in (2, 3, 4)
                                               for s, t in [(512, 388), (512, 100), (131, 4), (61, 20), (5, 36)]]
                         + [(2, 131, 12), (3, 131, 12), (2, 100, 8)])
def test_tiles_start_on_the_pooling_grid_and_cover_the_image(nets, depth, size, tile):
    model, step = nets[depth], 2 ** depth
    rows, cols = plan_tiles(model, (size, size + 7), out(model, tile))
    for axis in (rows, cols):
        assert all(o % step == 0 for o in axis.origins)
        assert axis.origins[-1] + axis.tile == axis.extent and 0 <= axis.extent - axis.size < step
        assert axis.window == model.input_size(axis.tile)
        starts, stops = zip(*axis.owned)
        assert starts[0] == 0 and stops[-1] == axis.size and starts[1:] == stops[:-1]  # a partition of the axis
        assert all(lo < hi for lo, hi in axis.owned)  # no window is computed in vain
        for o, (lo, hi) in zip(axis.origins, axis.owned):
            assert o <= lo <= hi <= o + axis.tile


def test_a_512_slice_is_four_windows_of_572(model):
    rows, cols = plan_tiles(model, (512, 512), 572)  # an input side
    assert rows.origins == cols.origins == (0, 128) and rows.window == 572
    assert default_tile(model, (512, 512)) == 388


def test_a_tile_off_the_pooling_grid_differs(model):
    # Why the origins matter: the old placement put the second 388 px tile at 388 = 4 mod 16.
    image = random_image((512, 512))
    ref = reference({4: model}, 4, (512, 512))
    padded = mirror_pad(normalize(image), 92, 92 + 388 + 388 - 512, 92, 92 + 388 + 388 - 512)
    on_grid = forward(model, padded[384:384 + 572, 384:384 + 572])[:512 - 384, :512 - 384]
    off_grid = forward(model, padded[388:388 + 572, 388:388 + 572])[:512 - 388, :512 - 388]
    np.testing.assert_allclose(on_grid, ref[384:, 384:], atol=ATOL)
    assert np.abs(off_grid - ref[388:, 388:]).max() > 0.05


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_batch_size_does_not_change_the_result(model, batch_size):
    image = random_image((127, 131))
    np.testing.assert_allclose(predict_tiled(model, image, tile=out(model, 36), batch_size=batch_size),
                               reference({4: model}, 4, (127, 131)), atol=ATOL)


def test_default_tile(model):
    assert default_tile(model, (512, 512)) == 388  # the paper's 572 -> 388
    assert default_tile(model, (100, 60)) == 100  # the smallest valid tile covering a small image
    assert default_tile(model, (3, 3)) == 4
    same = UNet(widths=(4, 8, 16, 32, 64), padding="same")
    assert default_tile(same, (512, 512)) == 512  # size-preserving: one pass up to 560 px
    assert default_tile(same, (1000, 40)) == 560


# -- size-preserving networks ----------------------------------------------------------------------------------

def same_padded_nets() -> list[torch.nn.Module]:
    torch.manual_seed(1)
    return [UNet(widths=(4, 8, 16), padding="same", dropout=0).eval(),
            UNetSame(in_channels=1, base_width=4, depth=3).eval(),
            SegNet(in_channels=1, base_width=4, depth=3).eval()]


@pytest.mark.parametrize("net", same_padded_nets(), ids=["unet-same", "UNetSame", "SegNet"])
@pytest.mark.parametrize("shape", [(50, 70), (100, 37), (1, 9), (512, 512)])
def test_same_padding_by_default_one_pass_over_the_image_padded_to_the_pooling_grid(net, shape):
    step = 2 ** net.depth
    image = random_image(shape)
    h, w = shape
    padded = mirror_pad(normalize(image), 0, -h % step, 0, -w % step)
    np.testing.assert_allclose(predict_tiled(net, image), forward(net, padded)[:h, :w], atol=ATOL)


@pytest.mark.parametrize("net", same_padded_nets(), ids=["unet-same", "UNetSame", "SegNet"])
def test_same_padding_small_tiles_predict_each_tile_from_its_window(net):
    # Smaller tiles than the image: each pixel comes from the tile that holds it farthest from a tile border, as
    # one forward pass over that tile's window (no context: seams can remain, documented).
    image = random_image((50, 70), seed=2)
    p = predict_tiled(net, image, tile=24, batch_size=2)  # input = output side
    rows, cols = plan_tiles(net, image.shape, 24)
    padded = mirror_pad(normalize(image), 0, rows.extent - 50, 0, cols.extent - 70)
    for (y, (y0, y1)), (x, (x0, x1)) in itertools.product(zip(rows.origins, rows.owned),
                                                          zip(cols.origins, cols.owned)):
        window = forward(net, padded[y:y + 24, x:x + 24])
        np.testing.assert_allclose(p[y0:y1, x0:x1], window[y0 - y:y1 - y, x0 - x:x1 - x], atol=ATOL)
    assert all(o % 2 ** net.depth == 0 for o in rows.origins + cols.origins)
    assert not np.allclose(p, predict_tiled(net, image), atol=1e-3)  # tile borders see zeros, not the image


def test_restores_training_mode_and_works_on_same_padding():
    m = UNet(widths=(4, 8, 16), padding="same", dropout=0).train()
    p = predict_tiled(m, np.zeros((50, 70), np.uint8), tile=32)
    assert p.shape == (50, 70) and m.training


# -- inputs ----------------------------------------------------------------------------------------------------

def test_rgb_images():
    torch.manual_seed(0)
    m = UNet(in_channels=3, widths=(4, 8, 16), dropout=0).eval()
    image = random_image((40, 30, 3))
    p = predict_tiled(m, image, tile=out(m, 12))
    assert p.shape == (40, 30)
    margin = (m.input_size(40) - 40) // 2  # valid outputs at depth 2: multiples of 4, so 40 x 32
    x = mirror_pad(normalize(image), margin, margin, margin, margin + 32 - 30).transpose(2, 0, 1)
    with torch.no_grad():
        direct = torch.sigmoid(m(torch.from_numpy(np.ascontiguousarray(x))[None]))[0, 0, :40, :30].numpy()
    np.testing.assert_allclose(p, direct, atol=ATOL)


@pytest.mark.parametrize("image, kwargs, message", [
    (np.zeros((2, 3, 4, 5), np.uint8), {}, "must be"),
    (np.zeros((0, 30), np.uint8), {}, "at least one pixel"),
    (np.zeros((30, 30), np.uint8), {"tile": 387}, "nearest valid"),
    (np.zeros((30, 30), np.uint8), {"tile": 0}, "positive"),
    (np.zeros((30, 30), np.uint8), {"batch_size": 0}, "batch_size"),
])
def test_bad_input_raises_value_error(model, image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_tiled(model, image, **kwargs)


def test_tta_averages_the_eight_symmetries(model):
    image = random_image((60, 44), seed=3)
    p = predict_tiled(model, image, tile=out(model, 52), tta=True)
    views = []
    for flip in (False, True):
        for k in range(4):
            v = np.rot90(image[:, ::-1] if flip else image, k)
            q = np.rot90(predict_tiled(model, np.ascontiguousarray(v), tile=out(model, 52)), -k)
            views.append(q[:, ::-1] if flip else q)
    assert p.shape == image.shape
    np.testing.assert_allclose(p, np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(p, predict_tiled(model, image, tile=out(model, 52)), atol=1e-4)  # the views do differ
    # A symmetric input gives the same map for the input and its mirror image.
    sym = np.concatenate([image, image[:, ::-1]], axis=1)
    ps = predict_tiled(model, sym, tile=out(model, 52), tta=True)
    np.testing.assert_allclose(ps, ps[:, ::-1], atol=ATOL)
