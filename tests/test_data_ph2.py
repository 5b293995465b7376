"""PH2 reading on generated cases in the original layout (BMP 1-bit and 24-bit masks, PNG or BMP images), and the
prepared layout made from them (datasets/prepare_ph2.py): the same arrays, every file checked against its manifest."""
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import real_data_root
from unet_repro.data import load_ph2, split_ph2
from unet_repro.data.ph2 import IMAGES_DIR, MANIFEST, prepare_ph2
from unet_repro.errors import DataError, DataNotFoundError, UsageError
from unet_repro.tasks import PH2, DataOptions


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


# -- the prepared layout ------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def prepared(ph2_root, tmp_path):
    """The generated cases of `ph2_root` prepared at 32 x 32."""
    prepare_ph2(ph2_root, tmp_path / "prepared", size=32)
    return tmp_path / "prepared"


def test_prepared_layout_gives_the_arrays_and_names_of_the_original(ph2_root, prepared, tmp_path):
    original = load_ph2(ph2_root, size=32, cache_dir=tmp_path / "cache")
    again = load_ph2(prepared, size=32, cache_dir=tmp_path / "unused")
    assert again.names == original.names == [f"IMD{i:03d}" for i in range(2, 8)]
    assert again.images.dtype == original.images.dtype == np.uint8
    assert np.array_equal(again.images, original.images) and np.array_equal(again.masks, original.masks)
    assert not (tmp_path / "unused").exists()  # a prepared layout needs no decode cache


def test_prepared_files_are_the_documented_pngs_and_manifest(ph2_root, prepared):
    manifest = json.loads((prepared / MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["size"]) == ("unet_repro-ph2-prepared", 1, 32)
    names = [f"IMD{i:03d}" for i in range(2, 8)]
    assert manifest["cases"] == names and "INTER_AREA" in manifest["resize"]
    # the sha256 of every source file read (one image and one mask per case) and of every file written
    sources = sorted(p for p in (ph2_root / IMAGES_DIR).rglob("*") if p.is_file())
    assert manifest["sources"] == {p.relative_to(ph2_root).as_posix(): sha256(p) for p in sources}
    written = sorted(p for p in prepared.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert manifest["files"] == {p.relative_to(prepared).as_posix(): sha256(p) for p in written}
    assert len(written) == 12
    # the image file is the RGB original resized by area averaging (an independent cv2 call: no channel swap)
    source = np.asarray(Image.open(ph2_root / IMAGES_DIR / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.png"))
    with Image.open(prepared / "images" / "IMD002.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), cv2.resize(source, (32, 32), interpolation=cv2.INTER_AREA))
    with Image.open(prepared / "masks" / "IMD003.png") as im:
        mask = np.asarray(im)
    assert im.mode == "L" and set(np.unique(mask)) == {0, 255}
    disc = make_case(ph2_root / "again", "IMD003", seed=1)  # the mask the fixture drew for IMD003
    expected = cv2.resize(disc.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) >= 0.5
    assert np.array_equal(mask == 255, expected)


def test_a_changed_file_is_refused_by_name(prepared):
    mask = prepared / "masks" / "IMD004.png"
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]  # still a valid 0/255 mask, one pixel flipped
    Image.fromarray(pixels).save(mask)
    with pytest.raises(DataError, match=r"masks/IMD004.png has changed since it was prepared \(its sha256"):
        load_ph2(prepared, size=32)


def test_a_missing_file_is_refused_by_name_before_any_image_is_read(prepared):
    (prepared / "images" / "IMD003.png").unlink()
    with pytest.raises(DataNotFoundError, match=r"images/IMD003.png is missing: manifest.json lists it"):
        PH2.check(prepared, DataOptions(size=32))
    with pytest.raises(DataNotFoundError, match=r"images/IMD003.png is missing"):
        load_ph2(prepared, size=32)


def test_an_unlisted_image_is_refused_not_left_out(prepared):
    shutil.copy(prepared / "images" / "IMD002.png", prepared / "images" / "IMD999.png")
    with pytest.raises(DataError, match=r"images/IMD999.png is not listed in manifest.json"):
        load_ph2(prepared, size=32)


def test_another_size_is_refused_with_what_to_do(prepared):
    with pytest.raises(DataError, match=r"prepared at 32x32, not the 64x64 asked for; pass --size 32, or prepare "
                                        r".*--size 64"):
        load_ph2(prepared, size=64)
    with pytest.raises(DataError, match=r"prepared at 32x32, not the 256x256"):
        PH2.check(prepared, DataOptions())  # the task's default size


@pytest.mark.parametrize("change, words", [
    ({"format": "unet_repro-ph2-cache-1"}, r"is not a prepared PH2 manifest \(format 'unet_repro-ph2-cache-1'"),
    ({"version": 2}, r"is version 2 of unet_repro-ph2-prepared, this unet_repro reads version 1"),
    ({"cases": ["IMD002"]}, r"its files are not the image and mask of each of its 1 cases"),
    ({"cases": ["../IMD002"] * 6}, r"bad case names: \.\./IMD002"),
    ({"cases": [f"IMD{i:03d}" for i in range(2, 8)] + ["IMD002"]}, r"of each of its 7 cases \(each listed once\)"),
])
def test_a_manifest_of_another_format_or_version_is_refused(prepared, change, words):
    path = prepared / MANIFEST
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(DataError, match=words):
        load_ph2(prepared, size=32)


def test_a_manifest_that_is_not_json_is_refused(prepared):
    (prepared / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match=r"manifest.json cannot be read as JSON"):
        load_ph2(prepared, size=32)


def test_prepare_refuses_a_used_folder_and_a_prepared_source(ph2_root, prepared, tmp_path):
    with pytest.raises(UsageError, match=r"exists and is not an empty folder"):
        prepare_ph2(ph2_root, prepared, size=32)
    with pytest.raises(UsageError, match=r"is already a prepared layout"):
        prepare_ph2(prepared, tmp_path / "twice", size=32)
    assert not (tmp_path / "twice").exists()


def test_the_task_splits_both_layouts_alike(tmp_path):
    # 200 tiny cases, the protocol's 100 / 50 / 50: the split is decided by the names, in either layout.
    root = tmp_path / "ph2"
    for i in range(200):
        make_case(root, f"IMD{i:03d}", size=(10, 8), mask_mode="1", seed=i)
    prepare_ph2(root, tmp_path / "prepared", size=8)
    options = DataOptions(size=8, split_seed=3)
    assert PH2.check(tmp_path / "prepared", options).count == PH2.check(root, options).count == 200
    a, b = PH2.load(root, options), PH2.load(tmp_path / "prepared", options)
    assert a.description == b.description and [len(a.train), len(a.val), len(a.test)] == [100, 50, 50]
    for part_a, part_b in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert part_a.names == part_b.names
        assert np.array_equal(part_a.images, part_b.images) and np.array_equal(part_a.labels, part_b.labels)


def test_prepare_script_writes_reads_back_and_checks(ph2_root, tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("prepare_ph2", Path(__file__).parents[1] / "datasets" /
                                                  "prepare_ph2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--from", str(ph2_root), "--dest", str(tmp_path / "out"), "--size", "16"])
    assert "6 cases at 16x16, 13 files (manifest.json included)" in capsys.readouterr().out
    script.main(["--check", str(tmp_path / "out"), "--size", "16"])
    assert "6 cases (IMD002 .. IMD007), prepared layout, every file matches its manifest" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        script.main(["--check", str(tmp_path / "out")])
    assert stop.value.code == 1 and "not the 256x256 asked for; pass --size 16" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_ph2_cases_prepared_equal_the_original(tmp_path):
    # Four real cases (BMP images, 1-bit BMP masks), copied into a small original layout and prepared.
    real = real_data_root("ph2")
    for case in sorted((real / IMAGES_DIR).iterdir())[:4]:
        shutil.copytree(case, tmp_path / "ph2" / IMAGES_DIR / case.name)
    prepare_ph2(tmp_path / "ph2", tmp_path / "prepared", size=64)
    original = load_ph2(tmp_path / "ph2", size=64, cache_dir=tmp_path / "cache")
    again = load_ph2(tmp_path / "prepared", size=64)
    assert again.names == original.names and len(again.names) == 4
    assert np.array_equal(again.images, original.images) and np.array_equal(again.masks, original.masks)
