"""Data-parallel plumbing: which process this is, its process group, and the collectives the loop needs.

Started by ``torchrun --nproc_per_node=W ...`` (which sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``), every process
runs `unet_repro.training.train`; the W processes join a process group (NCCL on CUDA, one GPU each:
``cuda:LOCAL_RANK``; gloo on CPU), wrap the model in ``DistributedDataParallel`` and split each epoch's samples
(`unet_repro.data.EpochSampler`). Only rank 0 validates and writes the run directory; the others wait for it.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import itertools
import os
import traceback
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import rng_state, seed_everything, set_rng_state
from .config import TrainConfig

# How long the other processes wait at a collective for rank 0, which validates and writes checkpoints alone.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the data-parallel processes: ``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and
    ``LOCAL_RANK`` (its index on this machine); without them the run is one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, writes the run directory and shows progress."""
        return self.rank == 0


def process_device(device: torch.device, dist: Distributed) -> torch.device:
    """The device of this process: with several processes on CUDA, GPU ``LOCAL_RANK`` (whatever index `device`
    names), made the current one; otherwise `device`."""
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


@functools.cache
def rendezvous_store() -> torch.distributed.Store:
    """The key-value store through which the processes find each other (``env://``: torchrun's, or one at
    ``MASTER_ADDR:MASTER_PORT``), opened once per process and shared by all its process groups."""
    store, _, _ = next(torch.distributed.rendezvous("env://", timeout=PROCESS_GROUP_TIMEOUT))
    return store


_groups_joined = itertools.count()


@contextlib.contextmanager
def process_group(dist: Distributed, device: torch.device) -> Iterator[None]:
    """Join the process group for the body (NCCL on CUDA, gloo on CPU) and leave it afterwards, also on error.

    Does nothing for one process, nor when the caller has joined a group already (the caller then leaves it).
    A process may join one group after another (`train` once per cross-validation fold): each gets its own keys in
    the rendezvous store, because torch names every new default group alike and a later group would otherwise
    read the addresses of the earlier one and connect to closed ports (a hang or "Connection refused").

    On error the frames of the failed body are cleared before the group is left: they hold the
    ``DistributedDataParallel`` wrapper, whose C++ reducer would otherwise own the group past
    ``destroy_process_group`` and destroy it, while holding the GIL, when the exception is dropped; with gloo that
    deadlocks against the group's worker thread (pytorch/pytorch#56297). So the traceback of such an error shows
    no local variables.
    """
    if not dist.enabled or torch.distributed.is_initialized():
        yield
        return
    cuda = device.type == "cuda"
    store = torch.distributed.PrefixStore(f"unet_repro/group_{next(_groups_joined)}", rendezvous_store())
    torch.distributed.init_process_group("nccl" if cuda else "gloo", store=store, rank=dist.rank,
                                         world_size=dist.world_size, timeout=PROCESS_GROUP_TIMEOUT,
                                         device_id=device if cuda else None)
    try:
        yield
    except BaseException as e:
        traceback.clear_frames(e.__traceback__)
        gc.collect()
        raise
    finally:
        gc.collect()  # a DDP wrapper caught in a reference cycle (see above) goes before the group does
        torch.distributed.destroy_process_group()


def process_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of the global generators (dropout) of process `rank`: the run's seed for rank 0 at the start, so one
    process is seeded as it always was; for other ranks (or later steps) one derived from all three, so that the
    processes draw different dropout masks."""
    if rank == 0 and step == 0:
        return seed
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1)[0])


def gradient_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Context for one forward + backward pass: DDP's ``no_sync`` when `sync` is false, so that accumulation passes
    that do not step keep their gradients local and only the stepping pass averages them across processes."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def broadcast(obj: Any, dist: Distributed) -> Any:
    """Rank 0's `obj` on every process (a picklable object); the others wait for rank 0 here."""
    if not dist.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_finite(loss: torch.Tensor, dist: Distributed) -> bool:
    """Whether the loss is finite on every process: all decide alike, so that none waits forever in a backward
    pass that the others skipped."""
    finite = torch.isfinite(loss.detach())
    if dist.enabled:
        finite = finite.to(torch.int32)
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite)


def sum_over_processes(values: Sequence[float], dist: Distributed, device: torch.device) -> list[float]:
    """Element-wise sums over the processes (e.g. loss totals and tile counts of an epoch)."""
    if not dist.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def gather_rng_states(dist: Distributed) -> list[dict[str, Any]] | None:
    """Every process's generator states (`rng_state`), by rank, on rank 0; None on the others."""
    state = rng_state()
    if not dist.enabled:
        return [state]
    states = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(state, states, dst=0)
    return states


def restore_rng(ckpt: dict[str, Any], dist: Distributed, seed: int) -> None:
    """Continue this process's generators from the checkpoint. A checkpoint of a data-parallel run holds every
    rank's states (``rng_ranks``; ``rng`` is rank 0's); a rank it has none for (it was made with fewer processes)
    starts fresh generators from (seed, rank, step)."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if dist.rank < len(states):
        set_rng_state(states[dist.rank])
    else:
        seed_everything(process_seed(seed, dist.rank, ckpt["step"]))


def effective_batch(cfg: TrainConfig, dist: Distributed) -> int:
    """Tiles per optimizer step: tiles per pass x passes per step x processes."""
    return cfg.batch_size * cfg.accumulate * dist.world_size
