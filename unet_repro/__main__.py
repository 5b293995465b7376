"""``python -m unet_repro <command>``: the same as ``unet-repro <command>``."""
from .cli import main

main()
