"""`python -m experiments.predict`: see `unet_repro.cli.predict` (the same command as `unet-repro predict` after install)."""
from unet_repro.cli.predict import main

if __name__ == "__main__":
    main(prog="python -m experiments.predict")
