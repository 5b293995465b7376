"""Where data lives: the environment variable that names a folder of datasets, and the repository's own
``datasets/`` folder (which ships the ISBI-2012 stacks; absent after a non-editable install)."""
from __future__ import annotations

from pathlib import Path

DATA_ENV = "UNET_REPRO_DATA"
REPO_DATASETS = Path(__file__).resolve().parents[2] / "datasets"

__all__ = ["DATA_ENV", "REPO_DATASETS"]
