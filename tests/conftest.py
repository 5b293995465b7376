"""Shared fixtures: small synthetic data written in the real on-disk formats, and the real data when present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage


def synthetic_em(n: int = 4, size: int = 96, cells: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EM-like slices: Voronoi cells (label 255) separated by dark 2-px membranes (label 0), with noise.

    Returns images (n, size, size) uint8 and labels (n, size, size) uint8 in {0, 255}.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        markers = np.zeros((size, size), np.int32)
        pts = rng.integers(0, size, (cells, 2))
        markers[pts[:, 0], pts[:, 1]] = np.arange(1, cells + 1)
        _, (iy, ix) = ndimage.distance_transform_edt(markers == 0, return_indices=True)
        regions = markers[iy, ix]
        edges = ndimage.morphological_gradient(regions, size=2) > 0
        label = np.where(edges, 0, 255).astype(np.uint8)
        image = np.where(edges, 60.0, 180.0) + rng.normal(0, 20, (size, size))
        images.append(np.clip(ndimage.gaussian_filter(image, 0.7), 0, 255).astype(np.uint8))
        labels.append(label)
    return np.stack(images), np.stack(labels)


def write_stack(path: Path, stack: np.ndarray) -> None:
    """A multi-page gray-value TIFF as the challenge ships it (one page per slice)."""
    tifffile.imwrite(path, stack, photometric="minisblack")


@pytest.fixture
def isbi_root(tmp_path: Path) -> Path:
    """A folder in the official ISBI-2012 layout (multi-page TIFFs) holding 4 small synthetic slices."""
    images, labels = synthetic_em()
    write_stack(tmp_path / "train-volume.tif", images)
    write_stack(tmp_path / "train-labels.tif", labels)
    write_stack(tmp_path / "test-volume.tif", images[:2])
    return tmp_path


def real_data_root(name: str) -> Path:
    """Where the code finds dataset `name` (``$UNET_REPRO_DATA/<name>``, else the repository's shipped
    ``datasets/<name>``), or skip the test when the real data is not there."""
    from unet_repro.tasks.base import DATA_ENV, REPO_DATASETS
    env = os.environ.get(DATA_ENV)
    root = Path(env) / name if env else REPO_DATASETS / name
    if not root.is_dir():
        pytest.skip(f"real data not available (set {DATA_ENV} to a folder holding {name}/)")
    return root


@pytest.fixture
def one_threshold_challenge_scoring(monkeypatch):
    """The end-of-run challenge report of a single ISBI run swept over one threshold (0.5) instead of ten: on the
    noisy map of a network trained for a few steps, the warping error of 5 full slices at 10 thresholds takes minutes
    on 2 cores. The sweep itself is tested in test_metrics_isbi.py and test_isbi_eval.py."""
    from unet_repro.cli import isbi_eval

    real = isbi_eval.report_single_run
    monkeypatch.setattr(isbi_eval, "report_single_run",
                        lambda run, splits: real(run, splits, thresholds=np.array([0.5])))


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its SHA-256 (to check that a failed command left them as they were)."""
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fails(main, args: list[str], capsys) -> tuple[int, str]:
    """Run an entry point that must fail; its exit code and its stderr (one `error:` line, no traceback)."""
    capsys.readouterr()  # what earlier calls printed (progress lines of a slow run) is not this call's
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return e.value.code, err
