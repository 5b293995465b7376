"""`python -m experiments.isbi`: see `unet_repro.cli.isbi` (the same command as `unet-repro isbi` after install)."""
from unet_repro.cli.isbi import main

if __name__ == "__main__":
    main(prog="python -m experiments.isbi")
