"""The GPU reproduction kit (benchmarks/gpu_session.sh) dry-run on the CPU with tiny settings (GPU_KIT_TINY=1):
every stage runs its real commands in seconds, stops at its time limit and says so, resumes, hands back at most 8
small files, and restores finished work on a fresh machine from the keep bundles it returned. Also: a SIGINT in the
middle of a training run (what the kit's `timeout --signal=INT` sends) leaves checkpoints that resume to the
uninterrupted result."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_em, write_stack

from unet_repro.training import load_checkpoint, read_metrics

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_session.sh"
STATUS = re.compile(r"^gpu-kit (\S+): (DONE|CONTINUE|FAILED|SKIPPED): .+ \[.+\] \(\d+ s\)$")


@pytest.fixture
def kit(tmp_path):
    """Run the kit in tiny mode with its state, carried folder and $OUT under tmp_path (a fresh machine: a new
    `state`); returns (exit code, output, {stage: status line})."""
    isbi = tmp_path / "isbi2012"
    isbi.mkdir()
    images, labels = synthetic_em(n=30, size=64, cells=8, seed=0)
    write_stack(isbi / "train-volume.tif", images)
    write_stack(isbi / "train-labels.tif", labels)
    write_stack(isbi / "test-volume.tif", images[:2])
    base = {**os.environ, "GPU_KIT_TINY": "1", "GPU_KIT_DIR": str(tmp_path / "kit"),
            "GPU_KIT_ISBI_ROOT": str(isbi), "PH2_SIZE": "32", "PYTHON": sys.executable, "GPU_KIT_COMMIT": "test"}

    def call(*stages: str, state: str = "state", out: str = "out", **env: str):
        out_dir = tmp_path / out
        proc = subprocess.run(["bash", str(SCRIPT), *stages], capture_output=True, text=True, timeout=300,
                              env={**base, "GPU_KIT_STATE": str(tmp_path / state), "OUT": str(out_dir), **env})
        text = proc.stdout + proc.stderr
        lines = {m[1]: m[0] for m in (STATUS.match(line) for line in proc.stdout.splitlines()) if m}
        return proc.returncode, text, lines
    return call


def returned_files(out: Path) -> list[Path]:
    """What comes back from the device: at most 8 files, 16 MiB each, plain names."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert 0 < len(files) <= 8, [p.name for p in files]
    for p in files:
        assert p.stat().st_size <= 16 * 2**20 and re.fullmatch(r"[A-Za-z0-9._-]+", p.name), p
    return files


def test_usage_and_an_honest_refusal_on_a_cpu(tmp_path):
    run = lambda *a, **env: subprocess.run(["bash", str(SCRIPT), *a], capture_output=True, text=True, timeout=120,
                                           env={**os.environ, "GPU_KIT_STATE": str(tmp_path / "s"),
                                                "OUT": str(tmp_path / "o"), "PYTHON": sys.executable, **env})
    usage = run()
    assert usage.returncode == 2 and "cuda-tests" in usage.stdout and "isbi-paper" in usage.stdout
    bad = run("bogus")
    assert bad.returncode == 2 and "unknown stage 'bogus'" in bad.stderr
    if torch.cuda.is_available():
        return
    full = run("bench")  # a full-size stage on a CPU is refused, not run for hours, and not reported as done
    assert full.returncode == 1 and "gpu-kit bench: FAILED: no CUDA device here" in full.stdout


@pytest.mark.slow
def test_gpu_stages_dry_run(kit, tmp_path):
    rc, text, lines = kit("setup", "cuda-tests", "bench", "lr-range")
    assert set(lines) == {"setup", "cuda-tests", "bench", "lr-range"}, text
    assert all(" DONE: " in lines[s] for s in ("setup", "bench", "lr-range")), text
    if torch.cuda.is_available():
        assert rc == 0 and " DONE: " in lines["cuda-tests"], text
    else:  # skipped CUDA tests are reported as such, never as done
        assert rc == 3 and "SKIPPED: 0 passed" in lines["cuda-tests"] and "no CUDA here" in lines["cuda-tests"]
    names = {p.name for p in returned_files(tmp_path / "out")}
    assert {"status.txt", "setup.md", "cuda-tests.md", "cuda-tests.xml", "bench.md", "lr-range.md",
            "lr_range.png", "lr_range.json"} == names
    bench = (tmp_path / "out" / "bench.md").read_text()
    assert all(f"## {part}" in bench for part in ("train_b1", "train_b8", "inference", "data_pipeline"))
    assert len((tmp_path / "out" / "status.txt").read_text().splitlines()) == 4
    # called again on the warm machine: the finished parts are not redone
    rc, text, lines = kit("bench", "lr-range", out="out2")
    assert " DONE: " in lines["bench"] and " DONE: " in lines["lr-range"], text
    assert "measured earlier on this machine" in text and "range test made earlier" in text


@pytest.mark.slow
def test_isbi_stage_stops_resumes_and_restores_its_folds_on_a_fresh_machine(kit, tmp_path):
    # A time limit that strikes: SIGINT, a one-line CONTINUE and exit 75 (call again).
    rc, text, lines = kit("isbi-paper", out="o1", GPU_KIT_STEP_LIMIT="2")
    assert rc == 75 and " CONTINUE: stopped at the time limit" in lines["isbi-paper"], text
    # Called again: fold 5 (slices 25-29) trains and the challenge-metrics report is written.
    rc, text, lines = kit("isbi-paper", out="o2")
    assert rc == 0 and "isbi-paper: DONE: pooled over 5 held-out slices" in lines["isbi-paper"], text
    names = {p.name for p in returned_files(tmp_path / "o2")}
    assert {"isbi-paper.md", "isbi-paper.summary.json", "isbi-paper.curves.png", "status.txt",
            "isbi.keep.tgz.part00-of-01"} == names
    report = (tmp_path / "o2" / "isbi-paper.md").read_text()
    assert "fold 5 (slices 25-29): finished" in report and "paper, Table 1" in report
    assert "fold 0 (slices 0-4): not started" in report
    # Here: file what came back; then a fresh machine (empty state) gets fold 5 from the carried keep bundle.
    rc, text, lines = kit("adopt", str(tmp_path / "o2"), out="o3")
    assert rc == 0 and (tmp_path / "kit" / "keep" / "isbi" / "isbi.keep.tgz.part00-of-01").exists(), text
    rc, text, lines = kit("isbi-paper", state="fresh", out="o4")
    assert rc == 0 and " DONE: " in lines["isbi-paper"], text
    assert "restored here: fold_5" in text and "fold 5: finished earlier, skipped" in text
    assert not (tmp_path / "fresh" / "isbi-cv-paper" / "fold_5" / "best.pt").exists()  # checkpoints never travel
    assert "(restored from a keep bundle)" in (tmp_path / "o4" / "isbi-paper.md").read_text()


@pytest.mark.slow
def test_ph2_stage_trains_from_the_portable_cache_and_restores_its_runs(kit, tmp_path):
    from test_data_ph2 import make_case
    for i in range(200):  # the PH2 layout, tiny images
        make_case(tmp_path / "ph2", f"IMD{i:03d}", size=(24, 20), seed=i, mask_mode="1" if i % 2 else "RGB")
    rc, text, lines = kit("prepare-ph2-cache", out="o0", PH2_ROOT=str(tmp_path / "ph2"))
    assert rc == 0 and (tmp_path / "kit" / "ph2" / "ph2_32.npz").exists(), text
    (tmp_path / "ph2").rename(tmp_path / "ph2-gone")  # the GPU machine has the cache, not the data
    rc, text, lines = kit("ph2-grid", out="o1")
    assert rc == 0 and "ph2-grid: DONE: all seeds 0,1,2 finished; results of 3 runs" in lines["ph2-grid"], text
    assert {p.name for p in returned_files(tmp_path / "o1")} == {
        "ph2-grid.md", "ph2.results.csv", "ph2.results.png", "ph2.keep.tgz.part00-of-01", "status.txt"}
    assert (tmp_path / "state" / "ph2-full" / "seed0-results.md").exists()
    rc, text, lines = kit("adopt", str(tmp_path / "o1"), out="o2")
    assert rc == 0, text
    rc, text, lines = kit("ph2-grid", state="fresh", out="o3")
    assert rc == 0 and " DONE: " in lines["ph2-grid"], text
    assert "restored here: unet_same-bce-s0, unet_same-bce-s1, unet_same-bce-s2" in text
    assert "training from epoch" not in text  # nothing trained again
    run = tmp_path / "fresh" / "ph2-full" / "unet_same-bce-s1"
    assert (run / "KEPT.md").exists() and np.load(run / "test_probs.npy").shape == (4, 32, 32)
    assert (tmp_path / "fresh" / "ph2-full" / "test_predictions.png").exists()


@pytest.mark.slow
def test_sigint_during_training_then_resume_gives_the_uninterrupted_result(isbi_root, tmp_path):
    # What the kit's `timeout --signal=INT` does to a training run at its time limit, at whatever moment it falls.
    args = ["--data-root", str(isbi_root), "--widths", "4,8,16", "--tile", "108", "--steps-per-epoch", "2",
            "--val-slices", "1", "--device", "cpu", "--epochs", "4", "--monitor", "iou"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    subprocess.run([sys.executable, "-m", "experiments.isbi", *args, "--out", str(tmp_path / "straight")],
                   check=True, capture_output=True, env=env, cwd=REPO, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.isbi", *args, "--out", str(killed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 240
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # during epoch 1 (or its checkpoint writes)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal came")
    assert proc.returncode == 130 and "interrupted; a training run continues from its last.pt" in err
    assert "Traceback" not in err
    epoch = load_checkpoint(killed / "last.pt")["epoch"]
    assert 0 <= epoch < 3
    subprocess.run([sys.executable, "-m", "experiments.isbi", "--resume", str(killed / "last.pt")], check=True,
                   capture_output=True, env=env, cwd=REPO, timeout=300)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "killed"))
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    rows = [[{k: v for k, v in r.items() if k not in ("tiles_per_s", "epoch_s")} for r in read_metrics(d / "metrics.csv")]
            for d in (tmp_path / "straight", killed)]
    assert rows[0] == rows[1]
