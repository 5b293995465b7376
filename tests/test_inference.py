import numpy as np
import pytest
import torch

from unet_repro.data import mirror_pad, normalize
from unet_repro.inference import predict_tiled
from unet_repro.models import UNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNet(widths=(4, 8, 16, 32, 64), dropout=0.5).eval()


@pytest.mark.parametrize("shape", [(512, 512), (333, 500), (100, 100)])
def test_any_image_size(model, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    p = predict_tiled(model, image, batch_size=2)
    assert p.shape == shape and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))


def test_one_tile_equals_one_forward_pass(model):
    image = np.random.default_rng(1).integers(0, 256, (100, 100), dtype=np.uint8)
    p = predict_tiled(model, image, tile=100)
    margin = (model.input_size(100) - 100) // 2
    x = torch.from_numpy(mirror_pad(normalize(image), margin, margin, margin, margin))[None, None]
    with torch.no_grad():
        direct = torch.sigmoid(model(x))[0, 0].numpy()
    np.testing.assert_allclose(p, direct, atol=1e-6)


def test_each_tile_is_predicted_from_its_mirrored_context(model):
    # Stitching check: every output tile equals a forward pass over its own window of the mirror-padded image.
    # (Tilings of different sizes need not agree exactly: 2x2 pooling makes the net equivariant only to shifts
    # by multiples of 16, and valid output tiles are 4 mod 16 in size, as the paper's 388.)
    image = np.random.default_rng(2).integers(0, 256, (150, 170), dtype=np.uint8)
    tile = 52
    p = predict_tiled(model, image, tile=tile, batch_size=3)
    size_in = model.input_size(tile)
    margin = (size_in - tile) // 2
    padded = mirror_pad(normalize(image), margin, margin + 4 * tile - 150, margin, margin + 4 * tile - 170)
    for ty, tx in [(0, 0), (1, 2), (2, 3)]:
        y, x = ty * tile, tx * tile
        window = torch.from_numpy(np.ascontiguousarray(padded[y:y + size_in, x:x + size_in]))[None, None]
        with torch.no_grad():
            expected = torch.sigmoid(model(window))[0, 0].numpy()
        got = p[y:y + tile, x:x + tile]
        np.testing.assert_allclose(got, expected[:got.shape[0], :got.shape[1]], atol=1e-5)


def test_restores_training_mode_and_works_on_same_padding():
    m = UNet(widths=(4, 8, 16), padding="same", dropout=0).train()
    p = predict_tiled(m, np.zeros((50, 70), np.uint8), tile=32)
    assert p.shape == (50, 70) and m.training


def test_rgb_images():
    m = UNet(in_channels=3, widths=(4, 8, 16), dropout=0)
    p = predict_tiled(m, np.zeros((40, 30, 3), np.uint8))
    assert p.shape == (40, 30)


def test_tta_averages_the_eight_symmetries(model):
    image = np.random.default_rng(3).integers(0, 256, (60, 44), dtype=np.uint8)
    p = predict_tiled(model, image, tile=52, tta=True)
    views = []
    for flip in (False, True):
        for k in range(4):
            v = np.rot90(image[:, ::-1] if flip else image, k)
            q = np.rot90(predict_tiled(model, np.ascontiguousarray(v), tile=52), -k)
            views.append(q[:, ::-1] if flip else q)
    assert p.shape == image.shape
    np.testing.assert_allclose(p, np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(p, predict_tiled(model, image, tile=52), atol=1e-4)  # the views do differ
    # A symmetric input gives the same map for the input and its mirror image.
    sym = np.concatenate([image, image[:, ::-1]], axis=1)
    ps = predict_tiled(model, sym, tile=52, tta=True)
    np.testing.assert_allclose(ps, ps[:, ::-1], atol=1e-5)
