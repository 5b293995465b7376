"""Segmentation losses, one per module, each taking logits."""
from .weighted_bce import WeightedBCEWithLogitsLoss

__all__ = ["WeightedBCEWithLogitsLoss"]
