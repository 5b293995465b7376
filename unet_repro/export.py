"""Exporting a trained network as a file that a runtime without this package can run: TorchScript or ONNX.

What the exported graph computes: the network's forward pass in eval mode (dropout off, batch normalisation with its
running statistics), nothing more::

    image  (N, C_in, H, W) float32, already normalised   ->   logits (N, C_out, H', W') float32

with N, H and W free (dynamic) but H and W each a *valid* input side: ``smallest + step * k`` for k = 0, 1, 2, ...,
where ``step = 2**depth`` (every 2x down-sampling must see an even map) and ``smallest`` is the first side that
gives a non-empty output. The output side is ``H' = H - 2 * margin``: the paper's U-Net (unpadded convolutions)
loses a context ``margin`` of 92 pixels on every side at depth 4 (572 -> 388), ``model.output_size(n)``; the padded
baselines keep the size (margin 0, sides multiples of 16 at depth 4).

What it does not do (the caller's job, as `unet_repro.inference.predict_tiled` does it here):

* no input normalisation: feed the numbers the network was trained on (default: uint8 gray values / 255);
* no tiling: a large image is not split into overlapping tiles, and the border is not mirrored to supply the
  context margin, so a U-Net output covers only the centre of its input;
* no sigmoid or softmax: the outputs are logits (a sigmoid gives P(foreground) for one channel, a softmax over the
  channels the class probabilities for K);
* no test-time augmentation.

The TorchScript file keeps the network's input-size check (a ValueError naming the nearest valid sizes); the ONNX
graph has none (ONNX has no assertions): an invalid side fails in the runtime or, for some networks, gives a
wrong output, so check sides against the rule first.

Every export writes, beside the model, a JSON sidecar ``<file name>.json`` (e.g. ``unet.onnx.json``) that tells a
user of the bare file what it needs (`describe`); the same JSON is also stored inside the file (ONNX:
``metadata_props["unet_repro"]``; TorchScript: the extra file ``unet_repro.json``, read with
``torch.jit.load(path, _extra_files={"unet_repro.json": ""})``). Files are written atomically
(`unet_repro.files.atomic_write`).

ONNX: exported with PyTorch's `torch.export`-based exporter (``torch.onnx.export(..., dynamo=True)``, the default
since PyTorch 2.9; the TorchScript-based one is deprecated), at opset `ONNX_OPSET` (18: the first the new exporter
writes natively, run by onnxruntime 1.14 and later). The batch, height and width are dynamic: the height and width
are given to `torch.export.export` as ``smallest + step * k`` so that the export holds for every valid side and
cannot silently fix them to the example's. It needs the ``onnx`` and ``onnxscript`` packages (``pip install
'unet_repro[export]'``, which also brings onnxruntime to run the file).
"""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .version import __version__
from .errors import UsageError
from .files import atomic_write
from .models import SizeChecked

ONNX_OPSET = 18
DEFAULT_NORMALIZATION = "uint8 gray values / 255"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
METADATA_KEY = "unet_repro"  # the sidecar's JSON inside the file (ONNX metadata_props key; TorchScript extra file)
# Warnings of the exporter that say nothing about these networks: torchvision's operators are not installed (none
# is used here) and max-unpooling's empty attribute is taken for a list of ints (which it is).
QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnx_ir._convenience")
INSTALL_HINT = "pip install 'unet_repro[export]' (or: pip install onnx onnxscript onnxruntime)"


@dataclass(frozen=True)
class SizeRule:
    """The valid input sides of a network: ``smallest + step * k`` (k >= 0), each giving an output side ``n - 2 *
    margin``."""

    smallest: int
    step: int
    margin: int

    def sizes(self, count: int) -> list[int]:
        """The `count` smallest valid input sides."""
        return [self.smallest + self.step * k for k in range(count)]


def size_rule(model: nn.Module) -> SizeRule:
    """The `SizeRule` of one of this package's networks, read off its first valid sides; ValueError if they do not
    follow one step with one margin."""
    if not isinstance(model, SizeChecked):
        raise TypeError(f"{type(model).__name__} is not one of unet_repro's networks (it has no size rule)")
    valid = [model.nearest_valid_sizes(0)[1]]
    while len(valid) < 6:
        valid.append(model.nearest_valid_sizes(valid[-1])[1])
    smallest, step = valid[0], valid[1] - valid[0]
    rule = SizeRule(smallest, step, (smallest - model.output_size(smallest)) // 2)
    if valid != rule.sizes(len(valid)) or any(model.output_size(n) != n - 2 * rule.margin for n in valid):
        raise ValueError(f"the valid input sides of {type(model).__name__} ({valid}...) do not follow one step")
    return rule


def describe(model: nn.Module, file: Path | str, file_format: str, normalization: str = DEFAULT_NORMALIZATION,
             model_name: str | None = None, opset: int | None = None) -> dict[str, Any]:
    """The sidecar of `model` exported to `file`: what a user of the bare file needs to run it."""
    rule = size_rule(model)
    k = model.out_channels
    return {
        "file": Path(file).name,
        "format": file_format,
        **({"opset": opset} if opset is not None else {}),
        "model": model_name or type(model).__name__,
        "input": {
            "name": INPUT_NAME,
            "layout": "N, C, H, W",
            "dtype": "float32",
            "channels": model.in_channels,
            "normalization": normalization,
        },
        "input_sizes": {
            "rule": f"H and W each {rule.smallest} + {rule.step} * k for k = 0, 1, 2, ... (independently; N free); "
                    f"other sides are not valid",
            **asdict(rule),
            "examples": [{"input": n, "output": n - 2 * rule.margin} for n in rule.sizes(5)],
        },
        "output": {
            "name": OUTPUT_NAME,
            "layout": "N, C, H', W'",
            "dtype": "float32",
            "channels": k,
            "size": f"H' = H - {2 * rule.margin}, W' = W - {2 * rule.margin} (the centre of the input: a context "
                    f"margin of {rule.margin} pixels on every side is used up)",
            "values": "logits: apply a sigmoid for P(foreground)" if k == 1
                      else f"logits: apply a softmax over the {k} channels for the class probabilities",
        },
        "not_included": "input normalisation, tiling of large images (and mirroring their border for the margin), "
                        "sigmoid/softmax, test-time augmentation",
        "exported_by": f"unet_repro {__version__}, torch {torch.__version__}",
    }


def sidecar_path(path: Path | str) -> Path:
    """Where the sidecar of the model file `path` goes: ``<file name>.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _eval_copy(model: nn.Module) -> nn.Module:
    """The caller's model is left as it is (device, train/eval mode); the export runs on an eval-mode CPU copy, so
    that the file loads on any machine."""
    return copy.deepcopy(model).cpu().eval()


def _write_sidecar(path: Path, info: dict[str, Any]) -> Path:
    side = sidecar_path(path)
    with atomic_write(side) as f:
        f.write((json.dumps(info, indent=2) + "\n").encode())
    return side


def export_torchscript(model: nn.Module, path: Path | str, normalization: str = DEFAULT_NORMALIZATION,
                       model_name: str | None = None) -> Path:
    """Write `model` as a TorchScript file (`torch.jit.script`; load it with plain ``torch.jit.load``) and its
    sidecar; returns `path`."""
    path = Path(path)
    net = _eval_copy(model)
    info = describe(net, path, "torchscript", normalization, model_name)
    scripted = torch.jit.script(net)
    with atomic_write(path) as f:
        torch.jit.save(scripted, f, _extra_files={f"{METADATA_KEY}.json": json.dumps(info)})
    _write_sidecar(path, info)
    return path


def require_onnx() -> None:
    """UsageError saying how to install the ONNX extra unless the exporter's packages import."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UsageError(f"ONNX export needs the {e.name or 'onnx'} package, which is not installed; install the "
                         f"extra with {INSTALL_HINT}") from None


def export_onnx(model: nn.Module, path: Path | str, normalization: str = DEFAULT_NORMALIZATION,
                model_name: str | None = None, opset: int = ONNX_OPSET) -> Path:
    """Write `model` as an ONNX file with dynamic batch, height and width (see the module docstring) and its
    sidecar; returns `path`. UsageError if the onnx packages are missing."""
    require_onnx()
    path = Path(path)
    net = _eval_copy(model)
    info = describe(net, path, "onnx", normalization, model_name, opset)
    rule = size_rule(net)
    # k = 2 and 3 steps above the smallest side: distinct, non-square, and never 0 or 1, which torch.export would
    # take for constants.
    example = torch.zeros(2, net.in_channels, rule.smallest + 2 * rule.step, rule.smallest + 3 * rule.step)
    height = rule.smallest + rule.step * torch.export.Dim("height_steps", min=0)
    width = rule.smallest + rule.step * torch.export.Dim("width_steps", min=0)
    shapes = ({0: torch.export.Dim("batch", min=1), 2: height, 3: width},)
    with torch.no_grad(), _quiet(QUIET_LOGGERS):
        program = torch.export.export(net, (example,), dynamic_shapes=shapes, strict=False)
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset, verbose=False,
                                         input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    _name_axes(onnx_program)
    proto = onnx_program.model_proto
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(info))
    proto.doc_string = (f"{info['model']} exported by {info['exported_by']}: {INPUT_NAME} (N, C, H, W) float32 -> "
                        f"{OUTPUT_NAME}; see metadata_props['{METADATA_KEY}']")
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    _write_sidecar(path, info)
    return path


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Raise these loggers to ERROR for the block, then restore their levels."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _name_axes(onnx_program: Any) -> None:
    """Name the dynamic axes batch, height, width (input) and out_height, out_width (output, where they differ)
    instead of the exporter's symbols (e.g. ``4*s39 + 44``)."""
    (image,), (logits,) = onnx_program.model.graph.inputs, onnx_program.model.graph.outputs
    names = {logits.shape[2].value: "out_height", logits.shape[3].value: "out_width"}
    names.update({image.shape[0].value: "batch", image.shape[2].value: "height", image.shape[3].value: "width"})
    onnx_program.rename_axes(names)


__all__ = ["DEFAULT_NORMALIZATION", "INPUT_NAME", "METADATA_KEY", "ONNX_OPSET", "OUTPUT_NAME", "SizeRule", "describe",
           "export_onnx", "export_torchscript", "require_onnx", "sidecar_path", "size_rule"]
