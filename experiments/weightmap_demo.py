"""`python -m experiments.weightmap_demo`: see `unet_repro.cli.weightmap_demo` (the same command as `unet-repro weightmap-demo` after install)."""
from unet_repro.cli.weightmap_demo import main

if __name__ == "__main__":
    main(prog="python -m experiments.weightmap_demo")
