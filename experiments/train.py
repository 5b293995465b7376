"""`python -m experiments.train`: see `unet_repro.cli.train` (the same command as `unet-repro train` after install)."""
from unet_repro.cli.train import main

if __name__ == "__main__":
    main(prog="python -m experiments.train")
