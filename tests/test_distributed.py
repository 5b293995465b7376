"""Data-parallel training: 2 CPU processes (gloo, loopback) started with torchrun, against one process.

One launch of `distributed_worker.py` makes four runs (see there); the checks here compare them with
single-process runs over the same tiles.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_em

from unet_repro.data.tiles import EpochSampler
from unet_repro.models import UNet
from unet_repro.training import (
    TrainConfig,
    load_checkpoint,
    build_network,
    read_metrics,
    train,
)

WIDTHS = (4, 8, 16)
WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data() -> tuple[np.ndarray, ...]:
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def config(**kw) -> TrainConfig:
    # No dropout: then a step over W processes' tiles equals one step over all of them in one batch, up to
    # float32 rounding (bf16 would round the batch of 4 and the 2 x 2 passes differently). Momentum on, so that
    # resuming has optimizer state to carry.
    base = TrainConfig(widths=WIDTHS, tile=UNet(widths=WIDTHS).input_size(28), dropout=0.0, lr=0.05, momentum=0.9,
                       epochs=1, patience=0, seed=3, device="cpu", augment=True, bf16=False)
    return replace(base, **kw)


# Each of the 2 processes: 2 passes of 1 tile, accumulated: one optimizer step of 4 tiles per epoch.
DDP = config(batch_size=1, accumulate=2, steps_per_epoch=2)
# One process, one pass of the same 4 tiles (samples 0-3 of each epoch).
SINGLE = config(batch_size=4, accumulate=1, steps_per_epoch=1)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", str(WORKER), str(out), json.dumps(asdict(DDP))]
    # Output to a file, not a pipe: a worker left behind (torchrun starts each in a session of its own) cannot keep
    # the test waiting for the pipe's end. Each worker also exits by itself after 100 s (distributed_worker.py).
    log_file = out / "torchrun.log"
    with open(log_file, "w") as sink, subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                                      start_new_session=True) as launch:
        try:
            launch.wait(timeout=150)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
            pytest.fail("the 2-process run did not finish in 150 s (a rank waiting for the other?):\n"
                        + log_file.read_text()[-3000:])
    log = log_file.read_text()
    assert launch.returncode == 0, log[-3000:]
    return out


def summaries(out: Path) -> list[dict]:
    return [json.loads((out / f"summary_rank{r}.json").read_text()) for r in range(2)]


def assert_close_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        torch.testing.assert_close(value, b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sampler_splits_each_epoch_between_processes():
    ranks = [EpochSampler(6, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    assert [list(s) for s in ranks] == [[12, 14, 16], [13, 15, 17]] and len(ranks[0]) == 3
    with pytest.raises(ValueError, match="multiple of world_size"):
        EpochSampler(5, rank=0, world_size=2)


def test_two_processes_make_the_step_of_one_process_over_all_tiles(ddp_run, tmp_path):
    train(SINGLE, *data(), tmp_path / "single")
    ddp = load_checkpoint(ddp_run / "rank0" / "first" / "last.pt")
    single = load_checkpoint(tmp_path / "single" / "last.pt")
    assert ddp["step"] == single["step"] == 1
    start = build_network(DDP).state_dict()
    assert not torch.equal(ddp["model"]["head.weight"], start["head.weight"])  # it did step
    assert_close_weights(ddp["model"], single["model"])  # the same format as a single-process checkpoint
    assert len(ddp["rng_ranks"]) == 2 and ddp["rng"].keys() == single["rng"].keys()
    for s in summaries(ddp_run):
        assert s["first"]["world_size"] == 2 and s["first"]["effective_batch"] == 4
        assert s["first"]["best_epoch"] == 0 and s["first"]["best"]["loss"] == pytest.approx(ddp["metrics"]["loss"])
    saved = json.loads((ddp_run / "rank0" / "first" / "config.json").read_text())
    assert saved["world_size"] == 2 and saved["effective_batch"] == 4


def test_only_rank_0_writes_the_run_directory(ddp_run):
    assert {p.name for p in (ddp_run / "rank0" / "first").iterdir()} == {
        "config.json", "metrics.csv", "last.pt", "best.pt", "curves.png", "train.log"}
    assert not (ddp_run / "rank1").exists()


def test_every_process_resumes_from_rank_0s_checkpoint(ddp_run, tmp_path):
    train(replace(SINGLE, epochs=2), *data(), tmp_path / "single")
    resumed = load_checkpoint(ddp_run / "rank0" / "resumed" / "last.pt")
    assert resumed["epoch"] == 1 and resumed["step"] == 2
    assert_close_weights(resumed["model"], load_checkpoint(tmp_path / "single" / "last.pt")["model"])
    assert [r["epoch"] for r in read_metrics(ddp_run / "rank0" / "resumed" / "metrics.csv")] == [1]


def test_rank_0s_early_stop_and_a_nan_on_one_rank_stop_every_process(ddp_run):
    for s in summaries(ddp_run):  # both processes returned: none waited for the other
        assert s["early"]["stop_reason"].startswith("early stopping") and s["early"]["optimizer_steps"] == 2
        assert s["diverge"].startswith("DivergedError: training loss became non-finite")
        assert "at epoch 0, in passes 0-1 " in s["diverge"]
