"""`python -m experiments.lr_range_test`: see `unet_repro.cli.lr_range` (the same command as `unet-repro lr-range-test` after install)."""
from unet_repro.cli.lr_range import main

if __name__ == "__main__":
    main(prog="python -m experiments.lr_range_test")
