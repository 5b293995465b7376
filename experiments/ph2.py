"""`python -m experiments.ph2`: see `unet_repro.cli.ph2` (the same command as `unet-repro ph2` after install)."""
from unet_repro.cli.ph2 import main

if __name__ == "__main__":
    main(prog="python -m experiments.ph2")
