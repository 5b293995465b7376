"""Exported networks (TorchScript, ONNX) compute what the PyTorch model computes, at every valid size, and say what
they need; the export command and its refusals.

The reference is always the eval-mode PyTorch model itself, on random inputs at sizes other than the one the ONNX
export traces with (batch 1 and 2, square and not, the smallest valid side included). Tolerances: TorchScript runs
the same kernels, so `torch.testing.assert_close`'s float32 defaults (rtol 1.3e-6, atol 1e-5); onnxruntime runs its
own convolutions, so |onnx - torch| <= 1e-4 * max(1, max |torch|) + 1e-4 * |torch| elementwise.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import synthetic_em

from experiments import export as export_shim
from unet_repro.cli import COMMANDS
from unet_repro.cli.export import build_parser
from unet_repro.export import (DEFAULT_NORMALIZATION, METADATA_KEY, ONNX_OPSET, describe, export_onnx,
                               export_torchscript, sidecar_path, size_rule)
from unet_repro.models import MODELS, build_model
from unet_repro.training import TrainConfig, load_trained, train

# (registry name, options): small widths; between them one and three input channels, one and K output channels.
CASES = {
    "unet": ("unet", dict(widths=(4, 8, 16))),
    "unet_depth4": ("unet", dict(base_width=4, depth=4)),
    "unet_k3": ("unet", dict(widths=(4, 8, 16), in_channels=3, out_channels=3)),
    "unet_same": ("unet_same", dict(base_width=4, depth=2, in_channels=3, out_channels=3)),
    "unet_strided": ("unet_strided", dict(base_width=4, depth=2, in_channels=1)),
    "unet_unpool": ("unet_unpool", dict(base_width=4, depth=2, in_channels=3)),
    "unet_dilated": ("unet_dilated", dict(base_width=4, depth=2, in_channels=1, out_channels=3)),
    "segnet": ("segnet", dict(base_width=4, depth=2, in_channels=3)),
    "segnet_nearest": ("segnet_nearest", dict(base_width=4, depth=2, in_channels=1, out_channels=2)),
}
# An ONNX export takes seconds (torch.export's shape algebra, then the translation): all but one case are marked
# slow, so that `pytest -m "not slow"` still exports the paper's U-Net once.
FAST_ONNX = {"unet"}

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")]


def make(case: str) -> torch.nn.Module:
    name, options = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, **options)
    # Batch-norm running statistics away from (0, 1), so that an export in train mode (batch statistics) would differ.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def valid_side(n: int, depth: int, valid_convs: bool) -> bool:
    """Direct from the architecture: each level's map (two unpadded 3x3 convolutions, -4) must be positive and even
    for its 2x2 pooling, and the output (bottleneck -4, then per level x2 and -4) positive. Padded networks: n a
    positive multiple of 2**depth."""
    if not valid_convs:
        return n > 0 and n % 2 ** depth == 0
    for _ in range(depth):
        n -= 4
        if n <= 0 or n % 2:
            return False
        n //= 2
    n -= 4
    for _ in range(depth):
        n = 2 * n - 4
    return n > 0


def test_sizes(model: torch.nn.Module) -> list[tuple[int, int, int]]:
    """(batch, height, width) at valid sides other than the ONNX export's example (smallest + 2, 3 steps)."""
    rule = size_rule(model)
    s, step = rule.smallest, rule.step
    return [(1, s, s), (2, s + step, s + 4 * step), (1, s + 5 * step, s + step)]


test_sizes.__test__ = False  # a helper, not a test


def reference(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def onnx_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


# -- TorchScript -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_network_compiles_with_torch_jit_script(name):
    options = dict(widths=(4, 8, 16)) if name == "unet" else dict(base_width=4, depth=2)
    torch.manual_seed(0)
    model = build_model(name, **options).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, model.in_channels, *test_sizes(model)[1][1:])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("case", sorted(CASES))
def test_torchscript_file_loads_with_plain_torch_and_matches_the_model(case, tmp_path):
    model = make(case).train()  # exported in eval mode all the same, and the caller's model left as it was
    path = export_torchscript(model, tmp_path / "net.pt")
    assert model.training
    loaded = torch.jit.load(str(path))
    for size in test_sizes(model):
        x = torch.randn(size[0], model.in_channels, *size[1:])
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), reference(model, x))
    extra = {f"{METADATA_KEY}.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[f"{METADATA_KEY}.json"]) == json.loads(sidecar_path(path).read_text())


def test_torchscript_file_keeps_the_size_check(tmp_path):
    model = make("unet")  # valid sides 44, 48, 52, ...: 46 would be cropped silently without the check
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "net.pt")))
    with pytest.raises(Exception, match="input size 46 is not valid.*nearest valid sizes are 44 and 48"):
        loaded(torch.zeros(1, 1, 48, 46))
    with pytest.raises(Exception, match="input size 8 is too small.*smallest valid size is 44"):
        loaded(torch.zeros(1, 1, 8, 48))


# -- ONNX ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [c if c in FAST_ONNX else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(CASES)])
def test_onnx_file_runs_in_onnxruntime_at_any_valid_size_and_matches_the_model(case, tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = make(case).train()
    path = export_onnx(model, tmp_path / "net.onnx")
    assert model.training
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", model.in_channels, "height", "width"]
    assert proto.opset_import[0].version == ONNX_OPSET
    stored = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(stored[METADATA_KEY]) == json.loads(sidecar_path(path).read_text())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in test_sizes(model):
        x = torch.randn(size[0], model.in_channels, *size[1:])
        (out,) = session.run(None, {"image": x.numpy()})
        onnx_close(out, reference(model, x).numpy())


def test_missing_onnx_package_is_one_usage_error_saying_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail as if it were not installed
    with pytest.raises(ValueError, match=r"needs the onnx package.*pip install 'unet_repro\[export\]'"):
        export_onnx(make("unet"), tmp_path / "net.onnx")
    assert not list(tmp_path.iterdir())


# -- the sidecar -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["unet", "unet_depth4", "unet_same", "segnet"])
def test_size_rule_lists_exactly_the_valid_sides(case):
    model = make(case)
    rule = size_rule(model)
    valid = [n for n in range(1, 400) if valid_side(n, model.depth, valid_convs=CASES[case][0] == "unet")]
    assert valid == [n for n in range(1, 400) if n >= rule.smallest and (n - rule.smallest) % rule.step == 0]
    for n in valid[:3]:
        assert model.output_size(n) == n - 2 * rule.margin


def test_sidecar_of_the_paper_u_net():
    info = describe(build_model("unet", base_width=4, depth=4), "unet.onnx", "onnx", opset=ONNX_OPSET,
                    model_name="unet")
    assert info["file"] == "unet.onnx" and info["format"] == "onnx" and info["opset"] == ONNX_OPSET
    assert info["model"] == "unet"
    assert info["input"] == {"name": "image", "layout": "N, C, H, W", "dtype": "float32", "channels": 1,
                             "normalization": "uint8 gray values / 255"}
    sizes = info["input_sizes"]
    # The paper: a 572 x 572 tile gives a 388 x 388 map; the smallest tile of depth 4 gives 4 x 4.
    assert (sizes["smallest"], sizes["step"], sizes["margin"]) == (188, 16, 92)
    assert (572 - sizes["smallest"]) % sizes["step"] == 0 and 572 - 2 * sizes["margin"] == 388
    assert sizes["examples"][:2] == [{"input": 188, "output": 4}, {"input": 204, "output": 20}]
    assert "188 + 16 * k" in sizes["rule"]
    assert info["output"]["channels"] == 1 and "sigmoid" in info["output"]["values"]
    assert "H' = H - 184" in info["output"]["size"]


def test_sidecar_of_k_channels_and_a_given_normalisation():
    model = build_model("segnet", base_width=4, depth=3, in_channels=3, out_channels=3)
    rule = "RGB uint8 / 255, then ImageNet mean/std"
    info = describe(model, "seg.pt", "torchscript", normalization=rule)
    assert info["input"]["channels"] == 3 and info["input"]["normalization"] == rule
    assert info["output"]["channels"] == 3 and "softmax over the 3 channels" in info["output"]["values"]
    assert (info["input_sizes"]["smallest"], info["input_sizes"]["step"], info["input_sizes"]["margin"]) == (8, 8, 0)
    assert info["model"] == "SegNet" and "opset" not in info
    assert DEFAULT_NORMALIZATION == "uint8 gray values / 255"


# -- the command -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny trained U-Net: 1 epoch of 2 steps on synthetic EM slices."""
    images, labels = synthetic_em(n=3, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    widths = (4, 8, 16)
    from unet_repro.models import UNet
    cfg = TrainConfig(widths=widths, tile=UNet(widths=widths).input_size(28), epochs=1, steps_per_epoch=2,
                      patience=0, seed=7, device="cpu")
    run_dir = tmp_path_factory.mktemp("run")
    train(cfg, images[:2], labels[:2], images[2:], labels[2:], run_dir)
    return run_dir / "best.pt"


def export_cli(*argv: str) -> None:
    export_shim.main([str(a) for a in argv])


def test_cli_exports_torchscript_that_matches_the_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / "models" / "unet.pt"
    export_cli("--checkpoint", checkpoint, "--format", "torchscript", "--out", out)
    assert "wrote" in capsys.readouterr().out
    model = load_trained(checkpoint, device="cpu").model
    x = torch.randn(2, 1, 48, 60)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), model(x))
    info = json.loads(sidecar_path(out).read_text())
    assert info["model"] == "unet" and info["format"] == "torchscript" and info["file"] == "unet.pt"


@pytest.mark.slow
def test_cli_exports_onnx_that_matches_the_checkpoint(checkpoint, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "unet.onnx"
    export_cli("--checkpoint", checkpoint, "--format", "onnx", "--out", out)
    model = load_trained(checkpoint, device="cpu").model
    x = torch.randn(1, 1, 52, 44)
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    onnx_close(got, reference(model, x).numpy())
    assert json.loads(sidecar_path(out).read_text())["opset"] == ONNX_OPSET


@pytest.mark.parametrize("existing", ["model", "sidecar"])
def test_cli_refuses_to_overwrite_unless_asked(checkpoint, tmp_path, capsys, existing):
    out = tmp_path / "unet.pt"
    (out if existing == "model" else sidecar_path(out)).write_text("keep me")
    with pytest.raises(SystemExit) as e:
        export_cli("--checkpoint", checkpoint, "--format", "torchscript", "--out", out)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and "already exists" in err and "--overwrite" in err
    assert (out if existing == "model" else sidecar_path(out)).read_text() == "keep me"
    export_cli("--checkpoint", checkpoint, "--format", "torchscript", "--out", out, "--overwrite")
    torch.jit.load(str(out))
    assert json.loads(sidecar_path(out).read_text())["file"] == "unet.pt"


def test_cli_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_cli("--checkpoint", tmp_path / "nope.pt", "--format", "torchscript", "--out", tmp_path / "x.pt")
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: checkpoint") and "nope.pt not found" in err
    assert not (tmp_path / "x.pt").exists()


def test_cli_without_the_onnx_package_says_how_to_install_it(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(SystemExit) as e:
        export_cli("--checkpoint", checkpoint, "--format", "onnx", "--out", tmp_path / "x.onnx")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: ONNX export needs the onnxscript package") and "unet_repro[export]" in err
    assert not list(tmp_path.iterdir())


def test_cli_flags_and_registration():
    parser = build_parser()
    assert parser.format_usage().startswith("usage: python -m experiments.export")
    for action in parser._actions:
        if action.dest != "help":
            assert "default" in action.help or "required" in action.help, action.option_strings
    assert COMMANDS["export"] == "export"
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "x.pt", "--format", "tflite", "--out", "x"])
