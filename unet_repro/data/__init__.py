"""Datasets: reading ISBI-2012 (and PH2) and cutting training tiles."""
from .isbi import ISBIData, TileDataset, find_stack, load_isbi, mirror_pad, normalize, read_stack

__all__ = ["ISBIData", "TileDataset", "find_stack", "load_isbi", "mirror_pad", "normalize", "read_stack"]
