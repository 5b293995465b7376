"""`python -m experiments.folder`: see `unet_repro.cli.folder` (the same command as `unet-repro folder` after install)."""
from unet_repro.cli.folder import main

if __name__ == "__main__":
    main(prog="python -m experiments.folder")
