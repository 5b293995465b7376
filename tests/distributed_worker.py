"""One process of the data-parallel runs of `test_distributed.py`, started by ``torchrun`` (not a test module).

    python -m torch.distributed.run --nproc_per_node=2 tests/distributed_worker.py OUT CONFIG_JSON

Every rank trains on the same small synthetic data (`synthetic_em`, as the single-process references of the test)
through four runs, each with its own run directory ``OUT/rank<R>/<run>``, so that the test can see which rank
wrote which file:

- ``first``: the run as configured (one epoch).
- ``resumed``: one more epoch, every rank resuming from rank 0's ``first/last.pt``.
- ``early``: learning rate 0 and patience 1: rank 0 alone decides to stop after epoch 1.
- ``diverge``: the loss is NaN on rank 1 only, at its second pass; every rank must raise `DivergedError`.

Each rank writes what `train` returned (or the error) to ``OUT/summary_rank<R>.json``.
"""
from __future__ import annotations

import faulthandler
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from conftest import synthetic_em

from unet_repro.losses import WeightedBCEWithLogitsLoss
from unet_repro.errors import DivergedError
from unet_repro.training import TrainConfig, train


def data() -> tuple[np.ndarray, ...]:
    """3 training and 1 validation slice of 64 x 64 px (the same as `test_distributed.data`)."""
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def poison_rank(rank: int, after: int) -> None:
    """Make the training loss NaN on process `rank` from its call number `after` + 1 on."""
    if int(os.environ["RANK"]) != rank:
        return
    real, calls = WeightedBCEWithLogitsLoss.forward, [0]

    def poisoned(self, logits, target, weight=None):
        calls[0] += 1
        loss = real(self, logits, target, weight)
        return loss * float("nan") if calls[0] > after else loss

    WeightedBCEWithLogitsLoss.forward = poisoned


def main(out: Path, cfg: TrainConfig) -> None:
    rank = int(os.environ["RANK"])
    runs = out / f"rank{rank}"
    slices = data()
    result = {"first": train(cfg, *slices, runs / "first")}
    result["resumed"] = train(replace(cfg, epochs=cfg.epochs + 1), *slices, runs / "resumed",
                              resume=out / "rank0" / "first" / "last.pt")
    result["early"] = train(replace(cfg, epochs=6, patience=1, lr=0.0), *slices, runs / "early")
    poison_rank(1, after=1)
    try:
        train(replace(cfg, epochs=2), *slices, runs / "diverge")
        result["diverge"] = "no error"
    except DivergedError as e:
        result["diverge"] = f"DivergedError: {e}"
    (out / f"summary_rank{rank}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    # A rank that hangs (one waiting for the other) prints where it waits and exits, rather than outliving the test.
    faulthandler.dump_traceback_later(100, exit=True)
    main(Path(sys.argv[1]), TrainConfig.from_dict(json.loads(sys.argv[2])))
