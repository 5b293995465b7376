"""Datasets: reading ISBI-2012 and PH2, cutting training tiles."""
from .isbi import ISBIData, TileDataset, find_stack, load_isbi, mirror_pad, normalize, read_stack
from .ph2 import PH2Data, load_ph2, read_case, split_ph2

__all__ = ["ISBIData", "PH2Data", "TileDataset", "find_stack", "load_isbi", "load_ph2", "mirror_pad", "normalize",
           "read_case", "read_stack", "split_ph2"]
