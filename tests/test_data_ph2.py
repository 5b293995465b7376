"""PH2 reading on generated cases in the original layout (BMP 1-bit and 24-bit masks, PNG or BMP images)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import real_data_root
from unet_repro.data import load_ph2, split_ph2
from unet_repro.data.ph2 import IMAGES_DIR


def make_case(root: Path, name: str, size=(60, 40), image_ext=".png", mask_mode="1", seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[mask] //= 3  # lesions are dark
    case = root / IMAGES_DIR / name
    (case / f"{name}_Dermoscopic_Image").mkdir(parents=True)
    (case / f"{name}_lesion").mkdir()
    Image.fromarray(image).save(case / f"{name}_Dermoscopic_Image" / f"{name}{image_ext}")
    m = Image.fromarray((mask * 255).astype(np.uint8))
    (m.convert("1") if mask_mode == "1" else m.convert("RGB")).save(case / f"{name}_lesion" / f"{name}_lesion.bmp")
    return mask


@pytest.fixture
def ph2_root(tmp_path):
    for i in range(6):
        make_case(tmp_path, f"IMD{i + 2:03d}", image_ext=".bmp" if i % 2 else ".png", mask_mode="1" if i % 3 else "RGB",
                  seed=i)
    return tmp_path


def test_reads_original_layout_and_binarises_both_mask_kinds(ph2_root, tmp_path):
    data = load_ph2(ph2_root, size=32, cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (6, 32, 32) and set(np.unique(data.masks)) == {0, 1}
    assert data.names == [f"IMD{i:03d}" for i in range(2, 8)]
    # 1-bit (IMD003) and 24-bit (IMD002) masks give the same disc
    assert abs(int(data.masks[0].sum()) - int(data.masks[1].sum())) <= 2
    # the lesion is where the image is dark
    assert data.images[0][data.masks[0] == 1].mean() < data.images[0][data.masks[0] == 0].mean()


def test_cache_is_written_once_and_reused(ph2_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_ph2(ph2_root, size=32, cache_dir=cache)
    assert len(list(cache.glob("ph2_32_*.npz"))) == 1
    import unet_repro.data.ph2 as ph2
    monkeypatch.setattr(ph2, "read_case", lambda *a: pytest.fail("decoded again despite the cache"))
    again = load_ph2(ph2_root, size=32, cache_dir=cache)
    assert np.array_equal(first.images, again.images) and first.names == again.names


def test_missing_mask_is_named(ph2_root, tmp_path):
    mask = next((ph2_root / IMAGES_DIR / "IMD004" / "IMD004_lesion").iterdir())
    mask.unlink()
    with pytest.raises(FileNotFoundError, match="IMD004: no lesion mask file"):
        load_ph2(ph2_root, size=32, cache_dir=tmp_path / "cache")


def test_unreadable_image_is_named(ph2_root, tmp_path):
    image = next((ph2_root / IMAGES_DIR / "IMD005" / "IMD005_Dermoscopic_Image").iterdir())
    image.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{image.name}: cannot be read"):
        load_ph2(ph2_root, size=32, cache_dir=tmp_path / "cache")


def test_mask_of_another_size_is_named(tmp_path):
    make_case(tmp_path, "IMD010")
    mask = tmp_path / IMAGES_DIR / "IMD010" / "IMD010_lesion" / "IMD010_lesion.bmp"
    Image.new("1", (61, 40)).save(mask)
    with pytest.raises(ValueError, match="IMD010_lesion.bmp is 61x40 but its image .* is 60x40"):
        load_ph2(tmp_path, size=32, cache_dir=tmp_path / "cache")


def test_missing_layout_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="PH2 Dataset images"):
        load_ph2(tmp_path, cache_dir=tmp_path / "cache")


def test_split_is_seeded_disjoint_and_sized():
    names = [f"IMD{i:03d}" for i in range(200)]
    s = split_ph2(names, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [100, 50, 50]
    assert not set(s["train"]) & set(s["val"]) and not set(s["val"]) & set(s["test"])
    assert s == split_ph2(names, seed=3) and s != split_ph2(names, seed=4)


@pytest.mark.realdata
def test_real_ph2(tmp_path):
    data = load_ph2(real_data_root("ph2"), size=64, cache_dir=tmp_path)
    assert data.images.shape == (200, 64, 64, 3) and len(data.names) == 200
    fraction = data.masks.mean(axis=(1, 2))
    assert fraction.min() > 0.02 and fraction.max() < 1.0  # every image has a lesion, none fills the whole image
    assert 0.15 < fraction.mean() < 0.5


# -- the portable cache (a machine without the PH2 folder: benchmarks/gpu_session.sh) ------------------------------

def synthetic_ph2(n: int, size: int, seed: int = 0):
    from unet_repro.data.ph2 import PH2Data
    rng = np.random.default_rng(seed)
    return PH2Data(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                   (rng.random((n, size, size)) < 0.3).astype(np.uint8), [f"IMD{i:03d}" for i in range(n)])


def test_portable_cache_round_trip_is_exact_and_checked(ph2_root, tmp_path):
    from unet_repro.data.ph2 import load_ph2_cache, save_ph2_cache
    from unet_repro.errors import DataError
    data = load_ph2(ph2_root, size=32, cache_dir=tmp_path / "cache")
    path = save_ph2_cache(data, tmp_path / "portable" / "ph2_32.npz")
    again = load_ph2_cache(path, size=32)
    assert np.array_equal(again.images, data.images) and again.images.dtype == np.uint8
    assert np.array_equal(again.masks, data.masks) and again.names == data.names
    with pytest.raises(DataError, match="holds PH2 at 32x32, not the 64x64"):
        load_ph2_cache(path, size=64)
    (tmp_path / "bad.npz").write_bytes(b"not a cache")
    with pytest.raises(DataError, match="is not a PH2 cache file"):
        load_ph2_cache(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_ph2_cache(tmp_path / "missing.npz")


def test_env_cache_and_standin_folder_replace_the_data(tmp_path, monkeypatch):
    # What the GPU kit does: the cache travels, the data folder does not. The PH2 task checks and loads the
    # stand-in folder (200 empty case folders) and gets the cache's arrays, without decoding any image.
    from unet_repro.data import ph2
    from unet_repro.tasks import PH2, DataOptions
    data = synthetic_ph2(200, 8)
    cache = ph2.save_ph2_cache(data, tmp_path / "ph2_8.npz")
    standin = ph2.write_ph2_standin(cache, tmp_path / "standin")
    assert sorted(p.name for p in (standin / IMAGES_DIR).iterdir()) == data.names
    monkeypatch.setenv(ph2.PH2_CACHE_ENV, str(cache))
    monkeypatch.setattr(ph2, "read_case", lambda *a: pytest.fail("decoded an image despite the cache"))
    options = DataOptions(size=8)
    assert PH2.check(standin, options).count == 200
    splits = PH2.load(standin, options)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [100, 50, 50]
    i = data.names.index(splits.test.names[0])
    assert np.array_equal(splits.test.images[0], data.images[i]) and np.array_equal(splits.test.labels[0], data.masks[i])


def test_env_cache_of_other_cases_is_refused(ph2_root, tmp_path, monkeypatch):
    from unet_repro.data import ph2
    from unet_repro.errors import DataError
    cache = ph2.save_ph2_cache(synthetic_ph2(3, 32), tmp_path / "other.npz")
    monkeypatch.setenv(ph2.PH2_CACHE_ENV, str(cache))
    with pytest.raises(DataError, match="holds 3 cases .* holds 6 other ones"):
        load_ph2(ph2_root, size=32)
