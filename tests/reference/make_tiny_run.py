"""Write the reference metrics of a tiny CPU training run (tests/reference/tiny_run_metrics.csv).

    python tests/reference/make_tiny_run.py

`tests/test_reference_run.py` trains the same run and compares: a change to the training loop that should not change
behaviour leaves these numbers as they are. Regenerate only for a change that is meant to alter training, and say
which in the commit.
"""
from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# The columns that a run determines (tiles/s and seconds depend on the machine).
COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_pixel_error", "val_iou", "val_iou_background", "lr")


def tiny_run(out: Path) -> list[dict[str, str]]:
    import numpy as np
    from conftest import synthetic_em

    from unet_repro.training import TrainConfig, train
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    cfg = TrainConfig(widths=(4, 8, 16), tile=60, dropout=0.5, lr=0.01, momentum=0.9, schedule="cosine",
                      batch_size=2, accumulate=2, epochs=3, steps_per_epoch=3, patience=0, seed=7, device="cpu",
                      bf16=False)
    train(cfg, images[:3], labels[:3], images[3:], labels[3:], out)
    with open(out / "metrics.csv", newline="") as f:
        return [{k: row[k] for k in COLUMNS} for row in csv.DictReader(f)]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        rows = tiny_run(Path(tmp) / "run")
    with open(HERE / "tiny_run_metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {HERE / 'tiny_run_metrics.csv'}")
