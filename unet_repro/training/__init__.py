"""Training, by job: `config` (what defines a run), `setup` (the network, optimizer, schedule and tiles a run trains
with), `loop` (the loop's named steps), `validate` (scoring whole images), `resume` (continuing a run),
`checkpoint` (saving, loading, generator states), `hardware` (device, precision, workers), `distributed`
(data-parallel plumbing), `run_dir` (the run folder's rules), `log` (lines, metrics.csv) and `trained` (a trained
network, for prediction)."""
from .checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import (MODEL_KEYS, RESUMABLE_KEYS, TrainConfig, check_device, defining_settings, neutral_settings,
                     validate_config)
from .distributed import Distributed
from .hardware import Precision, cpu_has_native_bf16, decide_precision, decide_workers, resolve_device
from .log import RunLog, read_metrics
from .loop import RunState, decide_tile, train
from .resume import Resume, stop_rule
from .run_dir import RESULT, RESULT_FILES, RUN_FILES, check_run_dir, claim_run_dir, holds_run, is_finished, read_result
from .setup import (Setup, build_network, build_optimizer, build_scheduler, build_train_dataset, build_train_loader,
                    lr_factor, set_up)
from .trained import Trained, load_model, load_trained
from .validate import evaluate, is_better

__all__ = ["Distributed", "MODEL_KEYS", "Precision", "RESULT", "RESULT_FILES", "RESUMABLE_KEYS", "RUN_FILES", "Resume",
           "RunLog", "RunState", "Setup", "TrainConfig", "Trained", "build_network", "build_optimizer",
           "build_scheduler", "build_train_dataset", "build_train_loader", "check_device", "check_run_dir",
           "claim_run_dir", "cpu_has_native_bf16", "decide_precision", "decide_tile", "defining_settings", "decide_workers", "evaluate",
           "holds_run", "is_better", "is_finished", "load_checkpoint", "load_model", "load_trained", "load_weights",
           "lr_factor", "neutral_settings", "read_metrics", "read_result", "resolve_device", "rng_state",
           "save_checkpoint", "seed_everything", "set_rng_state", "set_up", "stop_rule", "train", "validate_config"]
