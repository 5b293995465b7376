"""`python -m experiments.evaluate`: see `unet_repro.cli.evaluate` (the same command as `unet-repro evaluate` after
install)."""
from unet_repro.cli.evaluate import main

if __name__ == "__main__":
    main(prog="python -m experiments.evaluate")
