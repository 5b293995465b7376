"""The command-line layer as a new user meets it: the shipped data, the shared flags and their help, the own-data task,
and the package after a plain (non-editable) `pip install` in a fresh environment, run from outside the repository."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import synthetic_em
from PIL import Image

from experiments import folder, isbi, predict
from unet_repro.cli import COMMANDS
from unet_repro.cli import folder as cli_folder
from unet_repro.cli import isbi as cli_isbi
from unet_repro.cli import isbi_eval as cli_isbi_eval
from unet_repro.cli import lr_range as cli_lr_range_test
from unet_repro.cli import ph2 as cli_ph2
from unet_repro.cli import predict as cli_predict
from unet_repro.cli import weightmap_demo as cli_weightmap_demo
from unet_repro.tasks import ISBI, TASKS, find_data_root
from unet_repro.tasks.base import REPO_DATASETS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "isbi2012"
TINY = ["--widths", "4,8,16", "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu"]


# -- the shipped data --------------------------------------------------------------------------------------------

def test_isbi_stacks_ship_with_the_repository_and_equal_the_official_ones():
    for name in ("train-volume", "train-labels", "test-volume"):
        stack = tifffile.imread(SHIPPED / f"{name}.tif")
        assert stack.shape == (30, 512, 512) and stack.dtype == np.uint8, name
        official = os.environ.get("UNET_REPRO_DATA")
        if official and (Path(official) / "isbi2012" / f"{name}.tif").exists():
            assert np.array_equal(stack, tifffile.imread(Path(official) / "isbi2012" / f"{name}.tif")), name
    assert set(np.unique(tifffile.imread(SHIPPED / "train-labels.tif")).tolist()) == {0, 255}
    assert "Cardona" in (SHIPPED / "README.md").read_text()


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv("UNET_REPRO_DATA", raising=False)
    assert find_data_root(ISBI) == REPO_DATASETS / "isbi2012" == SHIPPED
    monkeypatch.setenv("UNET_REPRO_DATA", str(tmp_path))
    assert find_data_root(ISBI) == tmp_path / "isbi2012"
    assert find_data_root(ISBI, tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.slow
def test_readme_first_command_trains_the_quick_preset_through_the_default_data_path(monkeypatch, tmp_path,
                                                                                   one_threshold_challenge_scoring):
    # No UNET_REPRO_DATA, no --data-root: the stacks shipped in datasets/isbi2012 (as on a bare clone). The quick
    # preset itself, shortened only in its length and width.
    monkeypatch.delenv("UNET_REPRO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    result = isbi.main(["--preset", "quick", "--widths", "4,8,16,32,64", "--epochs", "1", "--steps-per-epoch", "2"])
    out = tmp_path / "runs" / "isbi-quick"
    assert result["data_root"] == str(SHIPPED) and result["preset"] == "quick"
    assert result["split"]["val_slices"] == [25, 26, 27, 28, 29]
    assert (out / "final_metrics.json").exists() and (out / "val_slice_29.png").exists()


def test_readme_commands_are_the_ones_that_exist():
    readme = (REPO / "README.md").read_text()
    first = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first) == 2 and "experiments.isbi --preset quick" in first[0] and "pytest" in first[1]
    for name in re.findall(r"python -m experiments\.(\w+)", readme):
        assert (REPO / "experiments" / f"{name}.py").exists(), name


# -- one flag set, help that answers --------------------------------------------------------------------------------

PARSERS = {
    "isbi": lambda: cli_isbi.build_parser(),
    "ph2": lambda: cli_ph2.build_parser(),
    "folder": lambda: cli_folder.build_parser(),
    "predict": lambda: cli_predict.build_parser(),
    "isbi_eval": lambda: cli_isbi_eval.build_parser(),
    "weightmap_demo": lambda: cli_weightmap_demo.build_parser(),
    "lr_range_test": lambda: cli_lr_range_test.build_parser(["--task", "isbi"]),
    "export": lambda: __import__("unet_repro.cli.export", fromlist=["x"]).build_parser(),
    "reproduce": lambda: __import__("unet_repro.cli.reproduce", fromlist=["x"]).build_parser(),
    "train": lambda: __import__("unet_repro.cli.train", fromlist=["x"]).build_parser(["--task", "folder"]),
}


def test_every_command_is_in_the_help_test():
    assert {name.replace("-", "_") for name in COMMANDS} <= set(PARSERS) | {"evaluate"}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help_with_its_default_and_the_usage_names_the_module(name):
    parser = PARSERS[name]()
    assert parser.format_usage().startswith(f"usage: python -m experiments.{name}")
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{name}: {action.option_strings} has no help"
        assert re.search(r"default|presets:|required", action.help), \
            f"{name}: {action.option_strings}: the help does not say the default: {action.help!r}"


def test_flags_that_play_no_part_are_not_offered():
    lr = cli_lr_range_test.build_parser(["--task", "isbi"])
    offered = {s for a in lr._actions for s in a.option_strings}
    assert not offered & {"--lr", "--epochs", "--steps-per-epoch", "--schedule", "--patience", "--resume"}
    isbi_flags = {s for a in PARSERS["isbi"]()._actions for s in a.option_strings}
    assert "--val-slices" in isbi_flags and not isbi_flags & {"--size", "--split-seed", "--images"}
    folder_flags = {s for a in PARSERS["folder"]()._actions for s in a.option_strings}
    assert {"--images", "--masks", "--size", "--split-seed"} <= folder_flags and "--val-slices" not in folder_flags


def test_tile_is_the_input_side_everywhere():
    for parser in (PARSERS["isbi"](), PARSERS["predict"]()):
        tile = next(a for a in parser._actions if "--tile" in a.option_strings)
        assert "input" in tile.help


def test_show_config_prints_the_effective_preset_and_runs_nothing(tmp_path, capsys, isbi_root):
    isbi.main(["--data-root", str(isbi_root), "--preset", "paper", "--lr", "0.02", "--val-slices", "1", "--out", str(tmp_path / "run"),
               "--show-config"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["widths"] == [64, 128, 256, 512, 1024] and shown["lr"] == 0.02 and shown["epochs"] == 60
    assert not (tmp_path / "run").exists()


def test_unet_repro_dispatches_every_command(capsys):
    from unet_repro.cli import main
    main(["--help"])
    listed = capsys.readouterr().out
    for name, module in COMMANDS.items():
        assert name in listed and (REPO / "experiments" / f"{name.replace('-', '_')}.py").exists()
    with pytest.raises(SystemExit) as e:
        main(["isbi", "--lr", "abc"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: argument --lr") and "unet-repro isbi --help" in err


def test_public_api():
    import unet_repro
    for name in ("UNet", "build_model", "predict_tiled", "load_model", "border_weight_map", "train", "TrainConfig",
                 "WeightedBCEWithLogitsLoss", "DiceLoss", "__version__"):
        assert hasattr(unet_repro, name), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", unet_repro.__version__)
    assert set(TASKS) == {"isbi", "ph2", "folder"}


def readme_python_example() -> str:
    readme = (REPO / "README.md").read_text()
    code = readme.split("```python", 1)[1].split("```", 1)[0]
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 6
    return code


def test_readme_python_example_runs_as_written(tmp_path, isbi_root, monkeypatch):
    isbi.main(["--data-root", str(isbi_root), "--out", str(tmp_path / "runs" / "isbi-quick"), *TINY,
               "--val-slices", "1"])
    Image.fromarray(tifffile.imread(isbi_root / "test-volume.tif")[0]).save(tmp_path / "slice.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(readme_python_example(), scope)
    assert scope["prob"].shape == (96, 96) and 0 <= scope["prob"].min() <= scope["prob"].max() <= 1


# -- your own data ---------------------------------------------------------------------------------------------

def make_folder_data(root: Path, n: int = 6, rgb: bool = False, mask_suffix: str = "") -> tuple[Path, Path]:
    images, labels = synthetic_em(n=n, size=72, cells=8, seed=4)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (image, label) in enumerate(zip(images, labels)):
        im = Image.fromarray(image).convert("RGB") if rgb else Image.fromarray(image)
        im.save(root / "images" / f"case_{i:02d}{'.png' if i % 2 else '.tif'}")
        Image.fromarray(label).save(root / "masks" / f"case_{i:02d}{mask_suffix}.png")
    return root / "images", root / "masks"


@pytest.mark.parametrize("model,loss,rgb", [("unet", "weighted_bce", False), ("unet_same", "dice", True)])
def test_own_data_trains_resumes_and_predicts(tmp_path, model, loss, rgb):
    images, masks = make_folder_data(tmp_path / "data", rgb=rgb, mask_suffix="_mask" if rgb else "")
    out = tmp_path / "run"
    args = ["--images", str(images), "--masks", str(masks), "--model", model, "--loss", loss, "--out", str(out),
            "--split-seed", "3", *TINY] + (["--base-width", "4"] if model != "unet" else [])
    result = folder.main(args)
    assert [len(result["split"][k]) for k in ("train", "val", "test")] == [4, 1, 1]
    assert result["config"]["model"] == model and result["config"]["loss"] == loss
    assert result["config"]["in_channels"] == (3 if rgb else 1) and "test" in result
    folder.main(["--resume", str(out / "last.pt"), "--epochs", "2"])  # the data flags come from the checkpoint
    assert len(json.loads((out / "config.json").read_text())["changes"]) == 1
    predict.main(["--checkpoint", str(out / "best.pt"), "--image", str(images / "case_01.png"),
                  "--out", str(tmp_path / "p")])
    assert tifffile.imread(tmp_path / "p" / "case_01_prob.tif").shape == (72, 72)


def test_own_data_with_a_missing_mask_names_the_file(tmp_path, capsys):
    images, masks = make_folder_data(tmp_path / "data")
    (masks / "case_03.png").rename(masks / "case_3.png")
    with pytest.raises(SystemExit) as e:
        folder.main(["--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "no mask for case_03.png" in err and "no image for case_3.png" in err
    assert not (tmp_path / "run").exists()


def test_own_data_needs_both_folders(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        folder.main(["--out", str(tmp_path / "run"), *TINY])
    assert e.value.code == 2 and "--images DIR and --masks DIR" in capsys.readouterr().err


# -- after `pip install .` ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_non_editable_install_runs_the_documented_commands_from_outside_the_repository(tmp_path, isbi_root):
    # A fresh venv that sees this environment's dependencies (torch, albumentations...) but not the editable
    # checkout: the package is installed from a wheel-like copy, and every command runs from an unrelated folder.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")  # plain paths: their .pth files are not run
    # `pip install .`, in two steps so that no build environment has to be downloaded: build the wheel with this
    # environment's setuptools, install it (not editable) into the fresh venv.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(REPO)], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("unet_repro-*.whl"))
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    str(wheel)], check=True, cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "UNET_REPRO_DATA": str(isbi_root.parent), "PYTHONPATH": ""}
    env.pop("PYTHONPATH")
    data = ["--data-root", str(isbi_root)]
    tiny = [*TINY, "--val-slices", "1"]

    def run(*args: str) -> str:
        done = subprocess.run([*args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = run(str(py), "-c", "import unet_repro; print(unet_repro.__file__)")
    assert str(REPO) not in where and "site-packages" in where
    cli = str(venv / "bin" / "unet-repro")
    run(cli, "isbi", *data, *tiny, "--out", "run")
    run(cli, "isbi", "--resume", "run/last.pt", "--epochs", "2")
    run(str(py), "-m", "unet_repro", "predict", "--checkpoint", "run/best.pt", "--image",
        str(isbi_root / "test-volume.tif"), "--out", "p")
    run(cli, "lr-range-test", *data, "--widths", "4,8,16", "--iters", "3", "--val-slices", "1", "--out", "lr")
    run(cli, "isbi", *data, "--widths", "4,8,16", "--epochs", "1", "--steps-per-epoch", "1", "--folds", "2",
        "--fold-list", "0", "--out", "cv")
    run(cli, "isbi-eval", *data, "--run", "cv")
    Image.fromarray(tifffile.imread(isbi_root / "test-volume.tif")[0]).save(work / "slice.png")
    (work / "runs").mkdir()
    (work / "run").rename(work / "runs" / "isbi-quick")
    (work / "example.py").write_text(textwrap.dedent(readme_python_example()) + "\nprint(prob.shape)\n")
    assert "(96, 96)" in run(str(py), "example.py")
