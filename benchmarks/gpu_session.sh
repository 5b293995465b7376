#!/usr/bin/env bash
# The GPU reproduction kit: every GPU result of this project, in stages that each fit in one device command.
# How a session runs it (device calls, carry lists, order, what comes back): benchmarks/GPU.md.
#
#   bash benchmarks/gpu_session.sh STAGE [STAGE ...]
#
# On the GPU machine, in this order of priority:
#   setup        install the carried wheels (albumentations is not in the GPU image), print the environment
#   cuda-tests   pytest -m cuda tests/test_cuda.py (bf16 autocast, channels_last, resume, overlap-tile CUDA vs CPU)
#   bench        benchmarks/train_step.py at batch 1 and 8, benchmarks/inference.py, benchmarks/data_pipeline.py
#   lr-range     the LR range test on the paper's network (preset paper)
#   isbi-paper   the paper preset on ISBI holding out slices 25-29 (fold 5 of 6) + the challenge-metrics report
#   isbi-cv      all 6 folds (fold 5 is reused) + the report against Table 1
#   ph2-grid     PH2, 7 models x 5 losses at full width: seed 0 first, then seeds 1-2
# Here, on the CPU (before a session with a lease):
#   prepare            prepare-wheels + prepare-ph2-cache, then the carry sizes
#   prepare-wheels     copy ../shared/gpu-wheels/*.whl into .whl/ (git-ignored), to be carried
#   prepare-ph2-cache  write runs/gpu-kit/ph2/ph2_256.npz, the portable PH2 cache (unet_repro.data.ph2), to carry
#   adopt DIR          file what a device call returned (DIR = its files_at): keep bundles into runs/gpu-kit/keep/,
#                      reports into runs/gpu-kit/reports/<time>/
#   status             the last status of every stage on this machine
#
# Every stage prints one line `gpu-kit <stage>: DONE|CONTINUE|FAILED|SKIPPED ...`, appends it to $OUT/status.txt
# and writes $OUT/<stage>.md (its numbers and reports). The stages share one wall-clock budget per command
# (GPU_KIT_BUDGET, 540 s): every Python step runs under `timeout --signal=INT`, so a training run stops like a
# Ctrl-C (the CLI's KeyboardInterrupt path: checkpoints are atomic, the interrupted epoch is redone) and the next
# command resumes it from runs/gpu/ while the machine is warm. On a fresh machine the finished units (ISBI folds,
# PH2 grid runs) come back from the carried keep bundles (runs/gpu-kit/keep/); an unfinished one starts over
# (its checkpoints, ~250 MB for the paper's network, cannot travel back).
#
# Exit status: 0 every stage DONE; 75 some stage must be called again (CONTINUE, none FAILED); 1 some stage FAILED;
# 3 some stage SKIPPED (no CUDA: cuda-tests on a CPU), nothing failed or left to continue; 2 usage.
#
# Environment: OUT (results folder; the device sets it; default runs/gpu/out), GPU_KIT_TINY=1 (a CPU dry run of
# every stage in seconds: tests/test_gpu_kit.py), GPU_KIT_BUDGET (s), GPU_KIT_WORKERS (data workers, default 8),
# GPU_KIT_STATE (default runs/gpu), GPU_KIT_DIR (default runs/gpu-kit), GPU_KIT_ISBI_ROOT and GPU_KIT_BENCH_ROOT
# (default datasets/isbi2012), GPU_KIT_PH2_CACHE, PH2_ROOT, PH2_SIZE (256), ISBI_LR (overrides the paper preset's
# lr), GPU_KIT_COMMIT (recorded in the reports: the device copy of the checkout has no .git), GPU_KIT_STEP_LIMIT (a
# cap in s on every Python step), GPU_KIT_RESERVE (45 s), GPU_KIT_WHEELS, PYTHON (default python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY=${PYTHON:-python3}
TINY=${GPU_KIT_TINY:-0}
STATE=${GPU_KIT_STATE:-$REPO/runs/gpu}
OUT=${OUT:-$STATE/out}
KIT=${GPU_KIT_DIR:-$REPO/runs/gpu-kit}
BUDGET=${GPU_KIT_BUDGET:-540}
WORKERS=${GPU_KIT_WORKERS:-8}
ISBI_ROOT=${GPU_KIT_ISBI_ROOT:-$REPO/datasets/isbi2012}
# The benchmarks always measure the committed ISBI stacks (512 x 512 slices, 572 tiles).
BENCH_ROOT=${GPU_KIT_BENCH_ROOT:-$REPO/datasets/isbi2012}
PH2_SIZE=${PH2_SIZE:-256}
PH2_CACHE=${GPU_KIT_PH2_CACHE:-$KIT/ph2/ph2_${PH2_SIZE}.npz}
SITE=${GPU_KIT_SITE:-/tmp/site}
COMMIT=${GPU_KIT_COMMIT:-unknown}
# Seconds kept back from the budget for what follows a Python step: the grace after SIGINT before SIGKILL, then
# packing the keep bundle and writing the reports.
KILL_AFTER=20
RESERVE=${GPU_KIT_RESERVE:-45}
STEP_LIMIT=${GPU_KIT_STEP_LIMIT:-100000}  # a cap on every Python step (the tests interrupt a stage with it)
START=$(date +%s)
DEADLINE=$((START + BUDGET))
ISBI_RUN=$STATE/isbi-cv-paper
PH2_RUN=$STATE/ph2-full
# No albumentations update check: the GPU machine has no network (each check waits up to 2 s for nothing).
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg NO_ALBUMENTATIONS_UPDATE=1

mkdir -p "$STATE/logs" "$STATE/status" "$OUT"
if [[ $TINY == 1 ]]; then
  MODE="tiny CPU dry run"
  WORKERS=0
  # One thread: on a busy CPU the OpenMP threads of tiny convolutions wait for each other (50x slower).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  # Tiny networks and schedules: the same commands as on the GPU, seconds each. Tile 92 is valid for depth 2.
  ISBI_TINY=(--widths 4,8,16 --tile 92 --epochs 1 --steps-per-epoch 2 --patience 0)
  PH2_TINY=(--models unet_same --losses bce --base-width 4 --epochs 1 --steps-per-epoch 1 --batch-size 2)
else
  MODE="full"
  ISBI_TINY=()
  PH2_TINY=()
fi

# -- reporting --------------------------------------------------------------------------------------------------

STAGE="" MD="" LOG="" STATUS="" DETAIL="" RC=0
declare -a RESULTS=()

say() { echo "[gpu-kit $(date +%T)] $*" | tee -a "${LOG:-/dev/null}"; }
note() { printf '%s\n' "$*" >> "$MD"; }
# Copy a file into the report: fenced, or its last N lines.
note_file() {
  local file=$1 lines=${2:-0}
  [[ -f $file ]] || return 0
  note '```'
  if (( lines > 0 )); then tail -n "$lines" "$file" >> "$MD"; else cat "$file" >> "$MD"; fi
  note '```'
}
left() { echo $((DEADLINE - $(date +%s))); }

begin_stage() {
  STAGE=$1 STATUS="" DETAIL="" RC=0 STAGE_T0=$(date +%s)
  MD=$OUT/$STAGE.md
  LOG=$STATE/logs/$STAGE.log
  : > "$MD"
  note "# gpu-kit $STAGE"
  note ""
  note "- mode: $MODE; device: ${DEVICE_NAME:-?}; commit: $COMMIT; $(date -u +%FT%TZ)"
  echo "===== $(date -u +%FT%TZ) $STAGE ($MODE) =====" >> "$LOG"
}

end_stage() {  # end_stage STATUS DETAIL
  STATUS=$1 DETAIL=$2
  local line="gpu-kit $STAGE: $STATUS: $DETAIL [$MODE; ${DEVICE_NAME:-?}] ($(( $(date +%s) - STAGE_T0 )) s)"
  { sed -n '1,2p' "$MD"; printf -- '- **status: %s**: %s\n' "$STATUS" "$DETAIL"; sed -n '3,$p' "$MD"; } > "$MD.tmp"
  mv "$MD.tmp" "$MD"
  echo "$line" >> "$OUT/status.txt"
  echo "$line" > "$STATE/status/$STAGE"
  RESULTS+=("$line")
  echo "$line"
}

# Run a command under what is left of the budget (at most CAP s) with SIGINT at the limit; RC = its exit status
# (124 or 137: stopped at the limit).
run_limited() {
  local cap=$1; shift
  local limit=$(( $(left) - RESERVE ))
  if (( limit < 15 )); then
    say "no time left to run: $*"
    note "- not run (no time left): \`$*\`"
    RC=124
    return 0
  fi
  if (( limit > cap )); then limit=$cap; fi
  if (( limit > STEP_LIMIT )); then limit=$STEP_LIMIT; fi
  say "run (limit ${limit} s): $*"
  local t0; t0=$(date +%s)
  set +e
  timeout --signal=INT --kill-after="$KILL_AFTER" "$limit" "$@" 2>&1 | tee -a "$LOG"
  RC=${PIPESTATUS[0]}
  set -e
  local took=$(( $(date +%s) - t0 ))
  say "exit $RC after $took s"
  note "- \`$*\`: exit $RC after $took s (limit $limit s)$( ((RC == 124 || RC == 137)) && echo ': stopped at the time limit')"
}
timed_out() { (( RC == 124 || RC == 137 )); }
error_line() { grep -E '^(error|Error|[A-Za-z]*Error)[: ]' "$LOG" | tail -n 1 | cut -c1-300 || true; }

# -- the Python side: keep bundles, progress, summaries ------------------------------------------------------------

kit_py() {
  "$PY" - "$@" <<'PY'
import glob, io, json, os, re, shutil, sys, tarfile, tempfile, time
from pathlib import Path

cmd, args = sys.argv[1], sys.argv[2:]
# A finished unit of a run folder: an ISBI fold with its final_metrics.json, a PH2 grid run with test_metrics.json.
MARKER = {"isbi": "final_metrics.json", "ph2": "test_metrics.json"}
KEPT_NOTE = ("This run was restored from a keep bundle of benchmarks/gpu_session.sh: its checkpoints were not kept, "
             "and test_probs.npy holds only the masks P > 0.5 (as 0/1) of the first 4 test images, which is what "
             "the grid's test_predictions.png draws; test_metrics.json is the run's own.\n")


def parts_of(keep_dir, name):
    """The parts NAME.keep.tgz.partII-of-NN of the newest complete bundle, or [] (with a note) if incomplete."""
    parts = sorted(glob.glob(os.path.join(keep_dir, f"{name}.keep.tgz.part*-of-*")))
    if not parts:
        return []
    total = int(parts[0].rsplit("-of-", 1)[1])
    if len(parts) != total:
        print(f"keep bundle {name} in {keep_dir} is incomplete ({len(parts)} of {total} parts): not restored")
        return []
    return parts


if cmd == "pack-keep":  # KIND RUN_DIR OUT_PREFIX TINY COMMIT
    kind, run, prefix, tiny, commit = args
    run = Path(run)
    units, buf = [], io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        def add_bytes(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        for f in sorted(run.iterdir()):  # not the kit's own markers: a fresh machine checks the work again
            if f.is_file() and not f.name.endswith(".pt") and ".tmp" not in f.name and not f.name.startswith(".kit"):
                tar.add(f, arcname=f"{run.name}/{f.name}")
        for d in sorted(p for p in run.iterdir() if p.is_dir()):
            if not (d / MARKER[kind]).exists():
                continue  # unfinished: its checkpoints cannot travel, it starts over on a fresh machine
            units.append(d.name)
            for f in sorted(d.rglob("*")):
                # not the per-fold figures val_*.png (~2 MB a fold; the report draws its own from heldout_prob.tif):
                # six folds must travel in 64 MiB with the checkout and the wheels
                if (not f.is_file() or f.suffix == ".pt" or ".tmp" in f.name
                        or (kind == "isbi" and f.name.startswith("val_") and f.suffix == ".png")):
                    continue
                arc = f"{run.name}/{f.relative_to(run)}"
                if kind == "ph2" and f.name == "test_probs.npy":
                    import numpy as np
                    probs = np.load(f)
                    reduced = io.BytesIO()
                    np.save(reduced, (probs[:4] > 0.5).astype(np.float16))
                    add_bytes(arc, reduced.getvalue())
                    add_bytes(f"{run.name}/{d.name}/KEPT.md", KEPT_NOTE.encode())
                else:
                    tar.add(f, arcname=arc)
        add_bytes("kit.json", json.dumps({"kind": kind, "run": run.name, "tiny": tiny == "1", "units": units,
                                          "commit": commit, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())}).encode())
    data = buf.getvalue()
    size = 15 * 1024 * 1024
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    for i, chunk in enumerate(chunks):
        Path(f"{prefix}.part{i:02d}-of-{len(chunks):02d}").write_bytes(chunk)
    print(f"keep bundle: {len(units)} finished unit(s), {len(data) / 2**20:.1f} MiB in {len(chunks)} part(s)")

elif cmd == "restore-keep":  # KIND KEEP_DIR STATE TINY
    kind, keep_dir, state, tiny = args
    parts = parts_of(keep_dir, kind)
    if not parts:
        print(f"no keep bundle for {kind} in {keep_dir}")
        sys.exit(0)
    data = b"".join(Path(p).read_bytes() for p in parts)
    with tempfile.TemporaryDirectory(dir=state) as tmp, tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        if any(n.startswith("/") or ".." in Path(n).parts for n in names):
            sys.exit("refused: a keep bundle member leaves its folder")
        tar.extractall(tmp)
        meta = json.loads(Path(tmp, "kit.json").read_text())
        if meta["tiny"] != (tiny == "1"):
            print(f"keep bundle {parts[0]} is from a {'tiny' if meta['tiny'] else 'full'} run: not restored")
            sys.exit(0)
        src, dst = Path(tmp, meta["run"]), Path(state, meta["run"])
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():  # folder-level files: what is here is at least as new
            if f.is_file() and not (dst / f.name).exists():
                shutil.copy2(f, dst / f.name)
        restored = []
        for d in sorted(p for p in src.iterdir() if p.is_dir()):
            if (d / MARKER[kind]).exists() and not (dst / d.name / MARKER[kind]).exists():
                shutil.rmtree(dst / d.name, ignore_errors=True)  # an unfinished copy here is behind the kept one
                shutil.move(str(d), dst / d.name)
                restored.append(d.name)
    print(f"keep bundle of {meta['created']} (commit {meta['commit']}): {len(meta['units'])} finished unit(s); "
          f"restored here: {', '.join(restored) or 'none (already here)'}")

elif cmd == "isbi-progress":  # RUN_DIR: one markdown line per fold
    run = Path(args[0])
    meta = json.loads((run / "folds.json").read_text()) if (run / "folds.json").exists() else None
    if meta is None:
        print("- no cross-validation started yet")
        sys.exit(0)
    epochs = meta.get("config", {}).get("epochs")
    for k, sl in enumerate(meta["folds"]):
        d = run / f"fold_{k}"
        if (d / "final_metrics.json").exists():
            fm = json.loads((d / "final_metrics.json").read_text())
            v = fm.get("validation", {})
            state = (f"finished: best epoch {fm.get('best_epoch')}, {fm.get('stop_reason')}; val IoU "
                     f"{v.get('iou', float('nan')):.4f}, pixel error {v.get('pixel_error', float('nan')):.4f}"
                     + (" (restored from a keep bundle)" if not (d / "best.pt").exists() else ""))
        elif (d / "metrics.csv").exists():
            rows = (d / "metrics.csv").read_text().strip().splitlines()[1:]
            state = f"in progress: {len(rows)} of {epochs} epochs trained" + ("" if (d / "last.pt").exists() else
                                                                              " (no last.pt: starts over)")
        else:
            state = "not started"
        print(f"- fold {k} (slices {sl[0]}-{sl[-1]}): {state}")

elif cmd == "ph2-progress":  # RUN_DIR MODELS LOSSES SEEDS: counts of finished runs per seed
    run, n_models, n_losses, seeds = Path(args[0]), int(args[1]), int(args[2]), args[3].split(",")
    for s in seeds:
        done = [d for d in run.glob(f"*-s{s}") if (d / "test_metrics.json").exists()]
        print(f"- seed {s}: {len(done)} of {n_models * n_losses} runs finished")

elif cmd == "junit":  # FILE: "tests T passed P failed F errors E skipped S"
    import xml.etree.ElementTree as ET
    root = ET.parse(args[0]).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    t, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    print(t, t - f - e - s, f, e, s)

elif cmd == "bench-summary":  # DIR with train_b1.txt, train_b8.txt, inference.txt, data_pipeline.txt
    d = Path(args[0])
    for b in (1, 8):
        p = d / f"train_b{b}.txt"
        if not p.exists():
            continue
        text = p.read_text()
        row = re.search(r"^ours \(bf16 autocast, channels-last\)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
        ach = re.search(r"^achieved: (.*)$", text, re.M)
        if row:
            rate, step, data_s = float(row[1]), float(row[2]), float(row[3])
            # "keeps up" = the step waits for data no more than 10% of its time (or 1 ms)
            keep_up = ("the data workers keep up" if data_s <= max(0.001, 0.1 * step) else
                       "the data workers do NOT keep up (the step waits for data)")
            print(f"- batch {b}: {rate:.1f} tiles/s, {step * 1000:.1f} ms/step of which {data_s * 1000:.1f} ms waiting for data: "
                  f"{keep_up}; {ach[1] if ach else 'no TFLOP/s line (not on CUDA)'}")
            if b == 1 and rate > 0:
                need = 60 * 250 / rate
                print(f"  - a `paper` ISBI fold (60 epochs x 250 tiles, batch 1) needs about {need:.0f} s of "
                      f"training steps at this rate, plus validation: "
                      + ("fits in one 540-s command" if need < 420 else "needs several commands on one warm "
                         "machine (call again within its 30 s)"))
    p = d / "inference.txt"
    if p.exists():
        for line in p.read_text().splitlines():
            m = re.match(r"predict_tiled \(seamless\), batch (\d+)\s+(\S+)\s+(\S+)", line)
            if m:
                print(f"- a 512x512 slice with predict_tiled, batch {m[1]}: {1e3 * float(m[2]):.1f} ms (median; "
                      f"fastest {1e3 * float(m[3]):.1f} ms)")
            elif re.match(r"\d+x\d+ image, predict_tiled|peak GPU memory", line):
                print(f"- {line.strip()}")
    p = d / "data_pipeline.txt"
    if p.exists():
        for line in p.read_text().splitlines():
            if line.startswith("to feed"):
                print(f"- data: {line.strip()}")

elif cmd == "ph2-cache":  # ROOT SIZE DEST: decode PH2 once, write the portable cache and its record
    from unet_repro.data.ph2 import load_ph2, save_ph2_cache
    import hashlib
    root, size, dest = Path(args[0]), int(args[1]), Path(args[2])
    with tempfile.TemporaryDirectory() as tmp:
        data = load_ph2(root, size=size, cache_dir=tmp)
    save_ph2_cache(data, dest)
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    record = {"source": str(root.resolve()), "size": size, "cases": len(data.names), "bytes": dest.stat().st_size,
              "sha256": sha, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "protocol": "unet_repro.data.ph2.load_ph2: INTER_AREA resize, masks averaged and thresholded at 0.5"}
    dest.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(f"PH2 cache {dest}: {len(data.names)} cases at {size}x{size}, {dest.stat().st_size / 2**20:.1f} MiB, "
          f"sha256 {sha[:16]}")

elif cmd == "standin":  # CACHE DEST
    from unet_repro.data.ph2 import write_ph2_standin
    print(write_ph2_standin(args[0], args[1]))

else:
    sys.exit(f"kit_py: unknown command {cmd}")
PY
}

# kit_py for the keep bundles and the PH2 stand-in: output to the log and the report; a failure ends the stage.
keep() {
  local out
  if out=$(kit_py "$@" 2>&1); then
    printf '%s\n' "$out" | tee -a "$LOG"
    printf '%s\n' "$out" | sed 's/^/- /' >> "$MD"
  else
    printf '%s\n' "$out" | tee -a "$LOG"
    end_stage FAILED "$1: $(printf '%s\n' "$out" | tail -n 1 | cut -c1-300)"
    return 1
  fi
}

# -- environment ----------------------------------------------------------------------------------------------------

DEVICE_NAME=""
ensure_env() {
  export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" -c "import albumentations" >/dev/null 2>&1; then
    # The GPU image lacks albumentations: install the carried wheels (benchmarks/GPU.md; ../shared/gpu-wheels).
    if ! compgen -G ".whl/*.whl" >/dev/null; then
      echo "gpu-kit: FAILED: albumentations is missing and .whl/ holds no wheels: run \`bash benchmarks/gpu_session.sh prepare-wheels\` here and carry .whl" >&2
      exit 1
    fi
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl; then
      echo "gpu-kit: FAILED: installing the wheels of .whl/ into $SITE failed (see above)" >&2
      exit 1
    fi
  fi
  if ! DEVICE_NAME=$("$PY" -c "import unet_repro, albumentations, torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA: CPU')"); then
    echo "gpu-kit: FAILED: cannot import unet_repro, albumentations and torch with $PY (see above)" >&2
    exit 1
  fi
}
has_cuda() { [[ $DEVICE_NAME != "no CUDA: CPU" ]]; }
# Full-size stages belong on the GPU: on a CPU they would run for hours (use GPU_KIT_TINY=1 for a dry run).
need_cuda() {
  if [[ $TINY != 1 ]] && ! has_cuda; then
    end_stage FAILED "no CUDA device here; full-size stages run on the GPU machine (GPU_KIT_TINY=1: a CPU dry run)"
    return 1
  fi
}

# -- GPU stages -----------------------------------------------------------------------------------------------------

stage_setup() {
  note ""
  note '```'
  {
    "$PY" - <<'PY'
import os, platform, shutil, torch, albumentations, unet_repro
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"albumentations {albumentations.__version__}, unet_repro {unet_repro.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}: {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
print(f"{os.cpu_count()} CPU cores; disk free {shutil.disk_usage('.').free / 2**30:.0f} GiB")
PY
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    echo "stages recorded on this machine:"; cat "$STATE"/status/* 2>/dev/null | grep -v " setup: " || echo "  none"
  } 2>&1 | tee -a "$LOG" >> "$MD"
  note '```'
  end_stage DONE "environment ready"
}

stage_cuda_tests() {
  local xml=$STATE/cuda-tests.xml
  rm -f "$xml"
  # Deterministic cuBLAS for the bit-exact resume test (set before CUDA starts).
  run_limited 420 env CUBLAS_WORKSPACE_CONFIG=:4096:8 "$PY" -m pytest -m cuda tests/test_cuda.py -p no:cacheprovider \
    -q -rA --junitxml="$xml"
  if timed_out; then end_stage CONTINUE "pytest stopped at the time limit; call again"; return 0; fi
  if [[ ! -f $xml ]]; then end_stage FAILED "pytest wrote no report (exit $RC): $(error_line)"; return 0; fi
  cp "$xml" "$OUT/cuda-tests.xml"
  local t p f e s
  read -r t p f e s < <(kit_py junit "$xml")
  note ""
  note_file "$LOG" 40
  local counts="$p passed, $f failed, $e errors, $s skipped of $t"
  if (( t == 0 )); then end_stage FAILED "no CUDA test was collected (exit $RC)"
  elif (( f + e > 0 || RC != 0 )); then end_stage FAILED "$counts (exit $RC)"
  elif (( p == 0 && s > 0 )); then end_stage SKIPPED "$counts: no CUDA here, nothing was tested on a GPU"
  elif (( s > 0 )); then end_stage FAILED "$counts: a CUDA test skipped on a CUDA machine"
  else end_stage DONE "$counts"
  fi
}

stage_bench() {
  need_cuda || return 0
  local d=$STATE/bench paper=64,128,256,512,1024
  mkdir -p "$d"
  local -a b1 b8 inf pipe
  if [[ $TINY == 1 ]]; then
    b1=(--widths 4,8,16 --steps 1 --warmup 0 --no-baseline --no-quick --rounds 1 --workers 0)
    b8=(--widths 4,8,16 --steps 1 --warmup 0 --no-baseline --no-quick --rounds 1 --workers 0 --batch-size 2)
    inf=(--widths 4,8,16 --batch-sizes 1 --repeats 1 --large 0)
    pipe=(--samples 2 --workers 1)
  else
    # The warm-up covers cuDNN's autotuning and the workers' start; 8 tiles per step need more workers.
    b1=(--widths $paper --batch-size 1 --steps 40 --warmup 8 --workers "$WORKERS")
    b8=(--widths $paper --batch-size 8 --steps 15 --warmup 4 --workers $((2 * WORKERS)))
    inf=(--widths $paper --batch-sizes 1,4,8 --repeats 10 --large 4096)
    pipe=(--samples 200 --workers 1,4,8,12)
  fi
  local name
  for name in train_b1 train_b8 inference data_pipeline; do
    if [[ -f $d/$name.ok ]]; then say "$name: measured earlier on this machine"; continue; fi
    local -a cmd
    case $name in
      train_b1) cmd=("$PY" benchmarks/train_step.py --data-root "$BENCH_ROOT" "${b1[@]}") ;;
      train_b8) cmd=("$PY" benchmarks/train_step.py --data-root "$BENCH_ROOT" "${b8[@]}") ;;
      inference) cmd=("$PY" benchmarks/inference.py --data-root "$BENCH_ROOT" "${inf[@]}") ;;
      data_pipeline)
        # How many workers the measured batch-8 rate needs (train_step's "ours" row: tiles/s).
        local rate
        rate=$(awk '/^ours \(bf16 autocast, channels-last\)/{print $(NF-4)}' "$d/train_b8.txt" 2>/dev/null | head -n1)
        cmd=("$PY" benchmarks/data_pipeline.py --data-root "$BENCH_ROOT" "${pipe[@]}" --gpu-tiles-per-s "${rate:-350}") ;;
    esac
    local before; before=$(wc -l < "$LOG")
    run_limited 240 "${cmd[@]}"
    tail -n +"$((before + 2))" "$LOG" | grep -v '^\[gpu-kit' > "$d/$name.txt" || true
    if (( RC == 0 )); then touch "$d/$name.ok"; elif timed_out; then break; else
      end_stage FAILED "$name: exit $RC: $(error_line)"; write_bench_md "$d"; return 0; fi
  done
  write_bench_md "$d"
  if timed_out; then end_stage CONTINUE "stopped at the time limit; call again (finished parts are kept while the machine is warm)"
  elif has_cuda; then end_stage DONE "$(kit_py bench-summary "$d" | head -n 1 | sed 's/^- //')"
  else end_stage DONE "CPU numbers of the tiny dry run, not a GPU result"
  fi
}

write_bench_md() {
  local d=$1 name
  note ""
  note "## Summary"
  kit_py bench-summary "$d" >> "$MD" || true
  for name in train_b1 train_b8 inference data_pipeline; do
    [[ -f $d/$name.txt ]] || continue
    note ""
    note "## $name"
    note_file "$d/$name.txt"
  done
}

stage_lr_range() {
  need_cuda || return 0
  local d=$STATE/lr-range
  local -a extra=()
  if [[ $TINY == 1 ]]; then extra=(--widths 4,8,16 --tile 92 --iters 5); fi
  if [[ ! -f $d/lr_range.json ]]; then
    # 400 steps of the paper's own optimizer (SGD, momentum 0.99, one tile each) from 1e-6 to 1.
    run_limited 480 "$PY" -m experiments.lr_range_test --task isbi --preset paper --data-root "$ISBI_ROOT" \
      --min-lr 1e-6 --max-lr 1 --iters 400 --workers "$WORKERS" --out "$d" --overwrite "${extra[@]}"
    if timed_out; then end_stage CONTINUE "stopped at the time limit; the range test starts over when called again"; return 0; fi
    if (( RC != 0 )); then end_stage FAILED "exit $RC: $(error_line)"; return 0; fi
  else
    say "range test made earlier on this machine"
  fi
  cp "$d/lr_range.png" "$d/lr_range.json" "$OUT/"
  local line
  line=$("$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"suggested lr {s['suggested_lr']:.3g} (reliable: {s['reliable']}{'; ' + s['note'] if s.get('note') else ''}), min-loss lr {s['min_loss_lr']:.3g}, {s['iterations_run']} steps, {s['seconds']} s\")" "$d/lr_range.json")
  note ""
  note "$line. The isbi stages use the paper preset's lr 0.001 unless ISBI_LR is set. Files: lr_range.png, lr_range.json."
  end_stage DONE "$line"
}

# The end of a training stage: pack its keep bundle (finished units travel to a fresh machine), then report.
end_training_stage() {  # end_training_stage KIND RUN_DIR DONE_DETAIL CONTINUE_DETAIL
  local rc=$RC
  keep pack-keep "$1" "$2" "$OUT/$1.keep.tgz" "$TINY" "$COMMIT" || return 0
  RC=$rc
  if (( RC == 0 )); then end_stage DONE "$3"
  elif timed_out; then end_stage CONTINUE "$4"
  else end_stage FAILED "exit $RC: $(error_line)"
  fi
}

isbi_stage() {  # isbi_stage NAME [--fold-list 5]
  need_cuda || return 0
  local name=$1; shift
  mkdir -p "$ISBI_RUN"
  keep restore-keep isbi "$KIT/keep/isbi" "$STATE" "$TINY" || return 0
  local done_marker=$ISBI_RUN/.kit-$name-done
  if [[ -f $done_marker ]]; then
    say "$name finished earlier (its report is in the run folder)"
    RC=0
  else
    run_limited 100000 "$PY" -m experiments.isbi --preset paper --folds 6 "$@" --out "$ISBI_RUN" \
      --data-root "$ISBI_ROOT" --workers "$WORKERS" ${ISBI_LR:+--lr "$ISBI_LR"} "${ISBI_TINY[@]}"
    if (( RC == 0 )); then touch "$done_marker"; fi
  fi
  note ""
  note "## Folds (\`$ISBI_RUN\`)"
  kit_py isbi-progress "$ISBI_RUN" >> "$MD"
  if [[ -f $ISBI_RUN/report.md ]]; then
    note ""
    note "## report.md (as of $(date -u -r "$ISBI_RUN/report.md" +%FT%TZ))"
    note ""
    cat "$ISBI_RUN/report.md" >> "$MD"
    cp "$ISBI_RUN/summary.json" "$OUT/$name.summary.json"
  fi
  if [[ $name == isbi-paper && -f $ISBI_RUN/fold_5/curves.png ]]; then
    cp "$ISBI_RUN/fold_5/curves.png" "$OUT/isbi-paper.curves.png"
  fi
  end_training_stage isbi "$ISBI_RUN" \
    "$(grep -o 'pooled over .*; report' "$LOG" | tail -n 1 | sed 's/; report$//' || echo 'report written')" \
    "stopped at the time limit; call again within 30 s (warm machine) to resume the fold in progress"
}
stage_isbi_paper() { isbi_stage isbi-paper --fold-list 5; }
stage_isbi_cv() { isbi_stage isbi-cv; }

stage_ph2_grid() {
  need_cuda || return 0
  if [[ ! -f $PH2_CACHE ]]; then
    end_stage FAILED "no PH2 cache at $PH2_CACHE: run \`bash benchmarks/gpu_session.sh prepare-ph2-cache\` here and carry runs/gpu-kit/ph2"
    return 0
  fi
  local standin=$STATE/ph2-standin
  keep standin "$PH2_CACHE" "$standin" || return 0
  mkdir -p "$PH2_RUN"
  keep restore-keep ph2 "$KIT/keep/ph2" "$STATE" "$TINY" || return 0
  local n_models=7 n_losses=5
  if [[ $TINY == 1 ]]; then n_models=1 n_losses=1; fi
  local phase
  RC=0
  # Seed 0's grid first, then all three seeds (the grid runs seed by seed, skipping finished runs): each command
  # writes its results only when its whole grid is finished, so seed 0's tables come before the rest is trained.
  # A finished grid run again only re-reads its runs and redraws the tables.
  local all_done=0 phase
  for phase in 0 0,1,2; do
    run_limited 100000 env UNET_REPRO_PH2_CACHE="$PH2_CACHE" \
      "$PY" -m experiments.ph2 --preset full --seeds "$phase" --out "$PH2_RUN" --data-root "$standin" \
      --size "$PH2_SIZE" --workers "$WORKERS" "${PH2_TINY[@]}"
    (( RC == 0 )) || break
    if [[ $phase == 0 ]]; then  # the seed-0 tables survive the full grid's
      for f in results.md results.csv results.png; do cp "$PH2_RUN/$f" "$PH2_RUN/seed0-$f"; done
    else
      all_done=1
    fi
  done
  note ""
  note "## Grid (\`$PH2_RUN\`, data: \`$PH2_CACHE\`)"
  local progress
  progress=$(kit_py ph2-progress "$PH2_RUN" "$n_models" "$n_losses" 0,1,2)
  note "$progress"
  grep -h "diverged\|became nan\|became inf" "$LOG" | sed 's/^/- diverged: /' | sort -u >> "$MD" || true
  local results=""
  if (( all_done )); then results=$PH2_RUN/results
  elif [[ -f $PH2_RUN/seed0-results.md ]]; then results=$PH2_RUN/seed0-results
  fi
  if [[ -n $results ]]; then
    note ""
    cat "$results.md" >> "$MD"
    cp "$results.csv" "$OUT/ph2.results.csv"
    cp "$results.png" "$OUT/ph2.results.png"
  fi
  end_training_stage ph2 "$PH2_RUN" \
    "all seeds 0,1,2 finished; $(grep -o 'results of [0-9]* runs' "$LOG" | tail -n1 || echo 'results written')" \
    "$(printf '%s\n' "$progress" | tr '\n' ' ' | sed 's/- //g'); call again"
}

# -- stages run here, on the CPU ----------------------------------------------------------------------------------

stage_prepare_wheels() {
  local src=${GPU_KIT_WHEELS:-$REPO/../shared/gpu-wheels}
  if ! compgen -G "$src/*.whl" >/dev/null; then end_stage FAILED "no wheels in $src (GPU_KIT_WHEELS)"; return 0; fi
  mkdir -p .whl
  cp -f "$src"/*.whl .whl/
  git check-ignore -q .whl/probe.whl 2>/dev/null || note "- warning: .whl/ is not git-ignored here"
  end_stage DONE "$(ls .whl/*.whl | wc -l) wheels in .whl/ ($(du -sh .whl | cut -f1)); carry .whl"
}

stage_prepare_ph2_cache() {
  local root=${PH2_ROOT:-}
  if [[ -z $root ]]; then
    if [[ -n ${UNET_REPRO_DATA:-} && -d $UNET_REPRO_DATA/ph2 ]]; then root=$UNET_REPRO_DATA/ph2; else root=$REPO/../shared/data/ph2; fi
  fi
  if [[ ! -d $root/PH2\ Dataset\ images ]]; then end_stage FAILED "no PH2 data at $root (set PH2_ROOT)"; return 0; fi
  local line
  if ! line=$(kit_py ph2-cache "$root" "$PH2_SIZE" "$PH2_CACHE" 2>&1 | tee -a "$LOG" | tail -n 1); then
    end_stage FAILED "$line"; return 0
  fi
  end_stage DONE "$line; carry $(realpath --relative-to="$REPO" "$(dirname "$PH2_CACHE")")"
}

carry_sizes() {
  # What travels: the tracked and untracked-not-ignored files, plus the carried folders (64 MiB in all).
  local tree
  tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -n1 | cut -f1)
  local whl ph2 ki kp
  size_of() { [[ -e $1 ]] && du -sb "$1" | cut -f1 || echo 0; }
  whl=$(size_of .whl) ph2=$(size_of "$KIT/ph2") ki=$(size_of "$KIT/keep/isbi") kp=$(size_of "$KIT/keep/ph2")
  local mib=$((1024 * 1024))
  note ""
  note "| call | carry | MiB that travel (limit 64) |"
  note "|---|---|---|"
  note "| setup, cuda-tests, bench, lr-range | .whl | $(( (tree + whl) / mib )) |"
  note "| isbi-paper, isbi-cv | .whl, runs/gpu-kit/keep/isbi | $(( (tree + whl + ki) / mib )) |"
  note "| ph2-grid | .whl, runs/gpu-kit/ph2, runs/gpu-kit/keep/ph2 | $(( (tree + whl + ph2 + kp) / mib )) |"
  cat "$MD" | tail -n 5
  local worst=$(( (tree + whl + (ki > ph2 + kp ? ki : ph2 + kp)) / mib ))
  if (( worst >= 64 )); then end_stage FAILED "a call would carry $worst MiB, over the 64 MiB limit"; else
    end_stage DONE "at most $worst MiB travel per call (limit 64)"; fi
}

stage_prepare() {
  begin_stage prepare-wheels; stage_prepare_wheels
  begin_stage prepare-ph2-cache; stage_prepare_ph2_cache
  begin_stage carry-sizes; carry_sizes
}

stage_adopt() {  # adopt DIR: the files a device call brought back
  local src=${1:-}
  if [[ -z $src || ! -d $src ]]; then end_stage FAILED "usage: adopt DIR (the files_at folder of a device call)"; return 0; fi
  local dest; dest=$KIT/reports/$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$dest"
  local kind n=0 adopted=()
  for kind in isbi ph2; do
    local parts=("$src"/$kind.keep.tgz.part*-of-*)
    [[ -e ${parts[0]} ]] || continue
    local total=${parts[0]##*-of-}
    if (( ${#parts[@]} != 10#$total )); then note "- $kind keep bundle incomplete (${#parts[@]} of $total parts): not adopted"; continue; fi
    mkdir -p "$KIT/keep/$kind"
    rm -f "$KIT/keep/$kind"/$kind.keep.tgz.part*  # a newer bundle holds everything the older one did
    cp "${parts[@]}" "$KIT/keep/$kind/"
    adopted+=("$kind keep -> $(realpath --relative-to="$REPO" "$KIT/keep/$kind")")
  done
  local f
  for f in "$src"/*; do
    [[ -f $f && $f != *.keep.tgz.part* ]] || continue
    cp "$f" "$dest/"; n=$((n + 1))
  done
  end_stage DONE "${adopted[*]:-no keep bundle}; $n report file(s) -> $(realpath --relative-to="$REPO" "$dest")"
}

stage_status() {
  if compgen -G "$STATE/status/*" >/dev/null; then cat "$STATE"/status/*; else echo "no stage has run here ($STATE)"; fi
}

# -- main -----------------------------------------------------------------------------------------------------------

if (( $# == 0 )) || [[ $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit $(( $# == 0 ? 2 : 0 ))
fi
for s in "$@"; do
  case $s in
    setup|cuda-tests|bench|lr-range|isbi-paper|isbi-cv|ph2-grid|prepare|prepare-wheels|prepare-ph2-cache|adopt|status) ;;
    *) [[ ${prev:-} == adopt ]] || { echo "gpu-kit: unknown stage '$s'; see \`bash $0 --help\`" >&2; exit 2; } ;;
  esac
  prev=$s
done

case $1 in
  status) stage_status; exit 0 ;;
  prepare|prepare-wheels|prepare-ph2-cache|adopt)
    DEVICE_NAME="here, no GPU needed" MODE="local"
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    case $1 in
      prepare) stage_prepare ;;
      prepare-wheels) begin_stage prepare-wheels; stage_prepare_wheels ;;
      prepare-ph2-cache) begin_stage prepare-ph2-cache; stage_prepare_ph2_cache ;;
      adopt) begin_stage adopt; stage_adopt "${2:-}"; begin_stage carry-sizes; carry_sizes ;;
    esac
    ;;
  *)
    ensure_env
    for s in "$@"; do
      begin_stage "$s"
      if (( $(left) < RESERVE + 30 )); then end_stage CONTINUE "not started: the command's time budget is spent; call again"; continue; fi
      case $s in
        setup) stage_setup ;;
        cuda-tests) stage_cuda_tests ;;
        bench) stage_bench ;;
        lr-range) stage_lr_range ;;
        isbi-paper) stage_isbi_paper ;;
        isbi-cv) stage_isbi_cv ;;
        ph2-grid) stage_ph2_grid ;;
      esac
    done
    ;;
esac

# At most 8 files come back from the device: fold the extra reports into one archive, never a keep bundle part.
mapfile -t files < <(find "$OUT" -maxdepth 1 -type f -printf '%f\n' | sort)
if (( ${#files[@]} > 8 )); then
  mapfile -t loose < <(printf '%s\n' "${files[@]}" | grep -v '\.keep\.tgz\.part' | grep -v '^status\.txt$')
  tar -czf "$OUT/reports.tgz" -C "$OUT" "${loose[@]}"
  (cd "$OUT" && rm -f "${loose[@]}")
  echo "gpu-kit: more than 8 result files: ${#loose[@]} reports packed into reports.tgz"
fi

echo "---- gpu-kit summary ($(( $(date +%s) - START )) s of a ${BUDGET}-s budget) ----"
printf '%s\n' "${RESULTS[@]}"
codes=$(printf '%s\n' "${RESULTS[@]}" | sed -E 's/^gpu-kit [^:]+: ([A-Z-]+):.*/\1/')
if grep -qx FAILED <<<"$codes"; then exit 1; fi
if grep -qx CONTINUE <<<"$codes"; then exit 75; fi
if grep -qx SKIPPED <<<"$codes"; then exit 3; fi
exit 0
