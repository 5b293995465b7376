"""Export a trained network as a file that runs without this package: TorchScript (``torch.jit.load``) or ONNX
(onnxruntime and other ONNX runtimes).

    python -m experiments.export --checkpoint runs/isbi-quick/best.pt --format onnx --out unet.onnx
    python -m experiments.export --checkpoint runs/folder-quick/best.pt --format torchscript --out unet.pt

Writes FILE and, beside it, FILE.json: what a user of the bare file needs (input layout and channels, the valid
input sizes and the context margin, the input normalisation, what the output channels mean). The exported graph is
the network alone: no normalisation, no tiling, no sigmoid (see `unet_repro.export`). ONNX needs the export extra:
pip install 'unet_repro[export]'. An existing output file is not replaced unless --overwrite.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..data.intensity import RULE_LINES
from ..export import ONNX_OPSET, export_onnx, export_torchscript, require_onnx, sidecar_path
from ..training import load_trained
from .common import make_parser, run_main

PROG = "python -m experiments.export"
FORMATS = ("torchscript", "onnx")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="best.pt or last.pt of a run")
    parser.add_argument("--format", required=True, choices=FORMATS, help="torchscript or onnx")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="the model file to write (its sidecar is FILE.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def run(args: argparse.Namespace) -> Path:
    outputs = [args.out, sidecar_path(args.out)]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise UsageError(f"{', '.join(existing)} already exists; choose another --out or pass --overwrite")
    if args.format == "onnx":
        require_onnx()  # before the checkpoint is read: a missing package is the first thing to fix
    trained = load_trained(args.checkpoint, device="cpu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The input scaling is that of unet_repro.data.intensity.normalize, the one every run here trains with.
    options = dict(normalization=RULE_LINES[trained.config.normalization], model_name=trained.config.model)
    if args.format == "onnx":
        export_onnx(trained.model, args.out, **options)
        what = f"ONNX, opset {ONNX_OPSET}"
    else:
        export_torchscript(trained.model, args.out, **options)
        what = "TorchScript"
    print(f"wrote {args.out} ({what}) and {sidecar_path(args.out)} (what the file needs)")
    return args.out


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))


__all__ = ["build_parser", "main", "run"]
