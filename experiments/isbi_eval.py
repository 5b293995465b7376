"""`python -m experiments.isbi_eval`: see `unet_repro.cli.isbi_eval` (the same command as `unet-repro isbi-eval` after install)."""
from unet_repro.cli.isbi_eval import main

if __name__ == "__main__":
    main(prog="python -m experiments.isbi_eval")
