"""`python -m experiments.reproduce`: see `unet_repro.cli.reproduce` (the same command as `unet-repro reproduce` after install)."""
from unet_repro.cli.reproduce import main

if __name__ == "__main__":
    main(prog="python -m experiments.reproduce")
