"""Datasets: reading ISBI-2012 and PH2 (`isbi`, `ph2`), your own folders (`folder`), masks (`masks`), the network's
input scaling (`intensity`) and training tiles (`tiles`)."""
from .intensity import normalize
from .isbi import ISBIData, find_stack, load_isbi, read_stack
from .ph2 import PH2Data, load_ph2, read_case, split_ph2
from .tiles import EpochSampler, TileDataset, mirror_pad

__all__ = ["EpochSampler", "ISBIData", "PH2Data", "TileDataset", "find_stack", "load_isbi", "load_ph2", "mirror_pad",
           "normalize", "read_case", "read_stack", "split_ph2"]
