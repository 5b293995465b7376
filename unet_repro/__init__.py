"""unet_repro: a faithful, fast reproduction of U-Net (Ronneberger, Fischer, Brox 2015) in PyTorch.

The public API::

    from unet_repro import UNet, build_model, predict_tiled, load_model, border_weight_map, train, TrainConfig

`UNet` is the paper's network, `border_weight_map` its loss weights (eq. 2), `WeightedBCEWithLogitsLoss` its loss,
`train` the training loop configured by a `TrainConfig`, `predict_tiled` the overlap-tile prediction and
`load_model` the network of a saved checkpoint. Datasets live in `unet_repro.tasks`, metrics in
`unet_repro.metrics`, the command-line entry points in `unet_repro.cli`.
"""
from .version import __version__  # noqa: E402

from .inference import predict_tiled  # noqa: E402
from .losses import (LOSSES, BCEWithLogitsLoss, ComboLoss, DiceLoss, FocalLoss, TverskyLoss,  # noqa: E402
                     WeightedBCEWithLogitsLoss, build_loss)
from .models import MODELS, UNet, build_model  # noqa: E402
from .training import TrainConfig, load_model, train  # noqa: E402
from .weightmap import border_weight_map  # noqa: E402

__all__ = ["BCEWithLogitsLoss", "ComboLoss", "DiceLoss", "FocalLoss", "LOSSES", "MODELS", "TrainConfig",
           "TverskyLoss", "UNet", "WeightedBCEWithLogitsLoss", "__version__", "border_weight_map", "build_loss",
           "build_model", "load_model", "predict_tiled", "train"]
