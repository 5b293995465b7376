"""Ctrl-C (SIGINT) during a training run finishes the epoch, saves it and stops with a one-line message and exit
code 130 instead of a traceback; `--resume` continues to the uninterrupted result."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unet_repro.training import load_checkpoint, read_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sigint_during_training_then_resume_gives_the_uninterrupted_result(isbi_root, tmp_path):
    args = ["--data-root", str(isbi_root), "--widths", "4,8,16", "--tile", "108", "--steps-per-epoch", "2",
            "--val-slices", "1", "--device", "cpu", "--epochs", "4", "--monitor", "iou", "--checkpoint-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    subprocess.run([sys.executable, "-m", "experiments.isbi", *args, "--out", str(tmp_path / "straight")],
                   check=True, capture_output=True, env=env, cwd=REPO, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.isbi", *args, "--out", str(killed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 240
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    saved = load_checkpoint(killed / "last.pt")["epoch"]
    proc.send_signal(signal.SIGINT)  # during epoch 1 (or its checkpoint writes)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal came")
    assert proc.returncode == 130 and "interrupted; a training run continues from its last.pt" in err
    assert "Traceback" not in err and "interrupt: finishing epoch and saving" in out
    epoch = load_checkpoint(killed / "last.pt")["epoch"]
    assert saved <= epoch < 3  # the epoch that was running was finished and saved
    assert "stopped: interrupted" in (killed / "train.log").read_text()
    subprocess.run([sys.executable, "-m", "experiments.isbi", "--resume", str(killed / "last.pt")], check=True,
                   capture_output=True, env=env, cwd=REPO, timeout=300)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "killed"))
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    timing = ("tiles_per_s", "epoch_s")
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in read_metrics(d / "metrics.csv")]
            for d in (tmp_path / "straight", killed)]
    assert rows[0] == rows[1]
