"""docs/extending.md as a newcomer follows it: the page's ```python blocks run as written, in order, as one script;
the network, loss and task they add are checked against independent computations; then all three are trained for a
moment through the package's entry points (`plan_run`, `run_and_score`, by the page's own command), resumed, refused
on bad data, and the checkpoint is loaded back.

The entry points run in a fresh interpreter: a script registers its pieces before it imports `unet_repro.cli`, as
the page says, and in this test session `unet_repro.cli` is already imported (its `--model` / `--loss` choices are
read at import)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from unet_repro.errors import CheckpointError, ConfigError, DataError, DataNotFoundError, UsageError
from unet_repro.geometry import training_tile
from unet_repro.losses import LOSSES
from unet_repro.models import NETWORKS
from unet_repro.tasks import TASKS, DataOptions
from unet_repro.training import TrainConfig, load_trained, validate_config

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "extending.md"
REGISTRIES = {"network": NETWORKS, "loss": LOSSES, "task": TASKS}


def page_code() -> str:
    """The page's ```python blocks, in order, as one program."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), re.S | re.M)
    assert len(blocks) == 4, "the page shows a network, a loss, a task and its command"
    return "\n".join(blocks)


@contextlib.contextmanager
def page_registered() -> Iterator[dict]:
    """The page run as one script (not as __main__), its names; the registries as they were afterwards."""
    saved = [(registry, dict(registry)) for registry in REGISTRIES.values()]
    scope: dict = {"__name__": "train_glas"}
    try:
        exec(compile(page_code(), str(PAGE), "exec"), scope)
        yield scope
    finally:
        for registry, before in saved:
            registry.clear()
            registry.update(before)


@pytest.fixture
def page() -> Iterator[dict]:
    with page_registered() as scope:
        yield scope


def write_glas(root: Path, train: int = 6, test: int = 2) -> Path:
    """GlaS's layout: train_N.bmp (RGB) with train_N_anno.bmp (glands numbered 1, 2, ... on 0), testA_N likewise;
    two sizes, 44x36 and 48x40 (width x height)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", train), ("testA", test)):
        for i in range(1, n + 1):
            h, w = (36, 44) if i % 2 else (40, 48)
            yy, xx = np.mgrid[:h, :w]
            anno = np.zeros((h, w), np.uint8)
            for gland in (1, 2, 3):
                cy, cx, r = rng.integers(8, h - 8), rng.integers(8, w - 8), rng.integers(4, 8)
                anno[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = gland
            pink = np.where(anno[..., None] > 0, (120, 40, 110), (230, 190, 220)) + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(np.clip(pink, 0, 255).astype(np.uint8), "RGB").save(root / f"{part}_{i}.bmp")
            Image.fromarray(anno, "L").save(root / f"{part}_{i}_anno.bmp")
    return root


# -- the page as written ----------------------------------------------------------------------------------------

def test_each_piece_is_one_registry_entry_and_the_page_leaves_no_trace():
    before = {kind: set(registry) for kind, registry in REGISTRIES.items()}
    with page_registered() as page:
        added = {kind: set(registry) - before[kind] for kind, registry in REGISTRIES.items()}
        assert added == {"network": {"tiny"}, "loss": {"soft_jaccard"}, "task": {"glas"}}
        assert NETWORKS["tiny"].build is page["TinyNet"] and LOSSES["soft_jaccard"] is page["SoftJaccardLoss"]
        assert TASKS["glas"] is page["GLAS"] and callable(page["main"])
    assert {kind: set(registry) for kind, registry in REGISTRIES.items()} == before


def test_the_network_declares_the_sides_it_accepts_without_being_built(page):
    tiny = NETWORKS["tiny"]
    model = tiny.build(in_channels=3, out_channels=2, base_width=4).eval()
    assert model.geometry == tiny.geometry(base_width=4)
    for n in range(6, 14):  # one 2x pooling, padded convolutions: even sides keep their size, odd ones cannot work
        with torch.no_grad():
            try:
                shape = tuple(model(torch.zeros(1, 3, n, n + 2)).shape)
            except RuntimeError:  # the up-sampled map no longer matches the skip
                shape = None
        assert shape == ((1, 2, n, n + 2) if n % 2 == 0 else None)
        assert model.geometry.output_or_none(n) == (n if n % 2 == 0 else None)
    cfg = TrainConfig(model="tiny", base_width=4, widths=(), dropout=0.0, padding="same", tile=33)
    with pytest.raises(ConfigError, match=r"tile \(--tile\) is 33, not a valid input side"):
        validate_config(cfg)
    validate_config(replace(cfg, tile=32))
    with pytest.raises(ConfigError, match="base_width"):
        validate_config(replace(cfg, base_width=None))
    assert training_tile(cfg.geometry(), (45, 37, 3)).input == 46  # the smallest even side covering the image


def test_the_loss_is_one_minus_the_soft_jaccard_index_per_image_and_ignores_the_weight(page):
    loss = LOSSES["soft_jaccard"]()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 5, 7, generator=g, dtype=torch.float64)
    target = (torch.rand(3, 1, 5, 7, generator=g) > 0.5).double()
    p, t = 1 / (1 + np.exp(-logits.numpy())), target.numpy()
    each = [1 - ((p[b] * t[b]).sum() + 1) / (p[b].sum() + t[b].sum() - (p[b] * t[b]).sum() + 1) for b in range(3)]
    assert float(loss(logits, target)) == pytest.approx(np.mean(each), rel=1e-12)
    weight = 10 * torch.rand(3, 1, 5, 7, generator=g, dtype=torch.float64)
    assert float(loss(logits, target, weight)) == float(loss(logits, target))
    assert float(loss(torch.where(target > 0, 40.0, -40.0).double(), target)) < 1e-12  # certain and right: 0
    z = logits.float().requires_grad_()
    loss(z, target.float(), None).backward()  # as training calls it: float32 logits
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# -- the task -----------------------------------------------------------------------------------------------------

def test_the_task_checks_from_the_headers_only(page, tmp_path, monkeypatch):
    root = write_glas(tmp_path / "glas")

    def no_pixels(self, *args, **kwargs):
        raise AssertionError("check read pixels")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    info = TASKS["glas"].check(root, DataOptions())
    assert (info.shape, info.count, info.source) == ((40, 48, 3), 6, str(root))


def test_the_task_names_the_file_in_one_line(page, tmp_path):
    glas = TASKS["glas"]

    def refused(root: Path, error: type, pattern: str, options: DataOptions = DataOptions()) -> None:
        with pytest.raises(error, match=pattern) as caught:
            glas.check(root, options)
        assert "\n" not in str(caught.value)

    refused(tmp_path / "nowhere", DataNotFoundError, r"GlaS data not found at .*nowhere \(no train_N.bmp\); expected "
                                                     r"train_N.bmp .*--data-root DIR")
    root = write_glas(tmp_path / "glas")
    refused(root, UsageError, r"--val-fraction \(0.0, above 0\)", DataOptions(val_fraction=0.0))
    (root / "testA_2_anno.bmp").unlink()
    refused(root, DataError, r"testA_2.bmp has no annotation testA_2_anno.bmp beside it")
    Image.new("L", (44, 36)).save(root / "testA_2_anno.bmp")
    Image.new("L", (44, 36)).save(root / "train_3.bmp")
    refused(root, DataError, r"train_3.bmp is L 44x36 and train_3_anno.bmp L 44x36; expected an RGB image")
    Image.new("L", (40, 36)).save(root / "train_3_anno.bmp")
    Image.new("RGB", (44, 36)).save(root / "train_3.bmp")
    refused(root, DataError, r"train_3.bmp is RGB 44x36 and train_3_anno.bmp L 40x36; expected .* of its size")
    Image.new("L", (44, 36)).save(root / "train_3_anno.bmp")
    (root / "train_5.bmp").write_bytes(b"not an image")
    refused(root, DataError, r"train_5.bmp cannot be read as an image")


def test_the_task_splits_the_training_images_by_seed_and_tests_on_part_a(page, tmp_path):
    root = write_glas(tmp_path / "glas")
    splits = TASKS["glas"].load(root, DataOptions(split_seed=1))
    train, val = set(splits.train.names), set(splits.val.names)
    assert len(val) == 1 and not train & val and train | val == {f"train_{i}" for i in range(1, 7)}  # 20% of 6
    assert splits.test.names == ["testA_1", "testA_2"]
    assert splits.description == {"train": sorted(train), "val": sorted(val), "test": ["testA_1", "testA_2"]}
    for part in (splits.train, splits.val, splits.test):
        for name, image, label in zip(part.names, part.images, part.labels):
            assert np.array_equal(image, np.asarray(Image.open(root / f"{name}.bmp").convert("RGB")))
            anno = np.asarray(Image.open(root / f"{name}_anno.bmp"))
            assert label.dtype == np.uint8 and np.array_equal(label, (anno > 0).astype(np.uint8))
    again = TASKS["glas"].load(root, DataOptions(split_seed=1))
    assert again.val.names == splits.val.names


# -- trained through the entry points -----------------------------------------------------------------------------

# A script as a user writes one: the page first (registering before unet_repro.cli is imported), then commands.
DRIVER = """
import json, sys
scope = {"__name__": "train_glas"}
exec(compile(open(sys.argv[1]).read(), "docs/extending.md", "exec"), scope)
for argv in json.loads(sys.argv[2]):
    try:
        scope["main"](argv)
        code = 0
    except SystemExit as e:
        code = e.code
    print(f"=== exit {code}", flush=True)
"""


def test_the_new_pieces_train_resume_score_and_load_through_the_entry_points(tmp_path):
    glas, bad = write_glas(tmp_path / "glas"), write_glas(tmp_path / "bad")
    (bad / "train_3_anno.bmp").unlink()
    runs = tmp_path / "runs"
    tiny = ["--model", "tiny", "--base-width", "4", "--loss", "soft_jaccard", "--device", "cpu"]
    calls = [["--task", "glas", "--help"],
             ["--task", "glas", "--data-root", str(glas), *tiny, "--epochs", "1", "--steps-per-epoch", "2", "--out",
              str(runs / "glas")],
             ["--task", "glas", "--resume", str(runs / "glas" / "last.pt"), "--epochs", "2"],
             ["--task", "glas", "--data-root", str(bad), *tiny, "--out", str(runs / "bad")]]
    (tmp_path / "page.py").write_text(page_code())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "page.py"), json.dumps(calls)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"^=== exit (\d+)$", done.stdout, re.M) == ["0", "0", "0", "1"], done.stderr
    usage = done.stdout.split("=== exit 0")[0]
    for text in ("tiny", "soft_jaccard", "--val-fraction", "--split-seed", "$UNET_REPRO_DATA/glas", "--resume"):
        assert text in usage, text
    assert re.search(r"^error: \S*train_3\.bmp has no annotation train_3_anno\.bmp beside it; GlaS ships one for "
                     r"every image$", done.stderr, re.M)
    assert not (runs / "bad").exists()  # refused before a run folder was made

    result = json.loads((runs / "glas" / "final_metrics.json").read_text())
    assert (result["config"]["model"], result["config"]["loss"], result["task"]) == ("tiny", "soft_jaccard", "glas")
    assert result["epochs_done"] == 2 and result["test_images"] == ["testA_1", "testA_2"] and "iou" in result["test"]
    assert len(json.loads((runs / "glas" / "config.json").read_text())["changes"]) == 1  # --epochs, by the resume

    with pytest.raises(CheckpointError, match=r"best.pt: its config does not describe a network"):
        load_trained(runs / "glas" / "best.pt", device="cpu")  # a network of one's own loads where it is registered
    with page_registered() as page:
        trained = load_trained(runs / "glas" / "best.pt", device="cpu")
        assert isinstance(trained.model, page["TinyNet"])
        prob = trained.predict(np.asarray(Image.open(glas / "testA_1.bmp")))
        assert prob.shape == (36, 44) and 0 <= prob.min() <= prob.max() <= 1
