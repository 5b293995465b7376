"""Training, by job: `config` (what defines a run), `checkpoint` (saving, loading, generator states), `distributed`
(data-parallel plumbing), `hardware` (device and precision), `run_dir` (the run folder's rules), `log` (lines,
metrics.csv, curves.png) and `loop` (the one training loop and its hooks)."""
from .checkpoint import (check_same_model, checkpoint_task, load_checkpoint, load_weights, rng_state, save_checkpoint,
                         seed_everything, set_rng_state)
from .config import MODEL_KEYS, RESUMABLE_KEYS, TrainConfig, check_device, check_tile, validate_config
from .distributed import Distributed
from .hardware import autocast_bf16, cpu_has_native_bf16, precision_name, resolve_device
from .log import RunLog, plot_curves, progress, read_metrics
from .loop import (build_model, build_optimizer, build_scheduler, build_train_dataset, build_train_loader, evaluate,
                   finished_reason, is_better, lr_factor, output_tile, train)
from .run_dir import RUN_FILES, claim_run_dir, holds_run
from .trained import Trained, load_model, load_trained

__all__ = ["MODEL_KEYS", "RESUMABLE_KEYS", "RUN_FILES", "Distributed", "RunLog", "TrainConfig", "Trained", "autocast_bf16",
           "build_model", "build_optimizer", "build_scheduler", "build_train_dataset", "build_train_loader",
           "check_device", "check_same_model", "check_tile", "checkpoint_task", "claim_run_dir",
           "cpu_has_native_bf16", "evaluate", "finished_reason", "holds_run", "is_better", "load_checkpoint",
           "load_model", "load_trained", "load_weights", "lr_factor", "output_tile", "plot_curves", "precision_name", "progress", "read_metrics",
           "resolve_device", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state", "train",
           "validate_config"]
