"""`python -m experiments.export`: see `unet_repro.cli.export` (the same as `unet-repro export` after install)."""
from unet_repro.cli.export import main

if __name__ == "__main__":
    main(prog="python -m experiments.export")
