"""The process group of a ``torchrun`` launch, and who this process is in it.

``train.distributed`` chooses (read once by the CLI, :func:`session`):

    auto  data-parallel (DDP) when launched by torchrun with more than one process, else one process
    ddp   data-parallel; needs the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)
    none  one process; a torchrun launch with more than one process is refused (every process would
          train the whole run and write the same folder)

Backend: NCCL when the run trains on CUDA, gloo on CPU. Rank 0 logs, shows progress and writes
files; the other ranks log warnings only and wait at a barrier while rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

CHOICES = ("auto", "ddp", "none")


class RankDone(Exception):
    """Raised on ranks other than 0 once training is over: rank 0 alone writes the final model and
    reports; the CLI ends the other processes quietly with exit code 0."""


def launched_world() -> int:
    """The process count torchrun announced in the environment (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Data-parallel processes of this run (1 without a process group)."""
    if not is_initialized():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def rank() -> int:
    if not is_initialized():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def wanted(choice: str) -> bool:
    """Whether ``train.distributed=choice`` asks for a process group in this environment."""
    from rlhfkit.config import ConfigError

    if choice not in CHOICES:
        raise ConfigError(f"train.distributed={choice}: choose one of {', '.join(CHOICES)}")
    world = launched_world()
    if choice == "none":
        if world > 1:
            raise ConfigError(f"train.distributed=none, but torchrun started {world} processes: each "
                              "would train the whole run into the same folder; use train.distributed="
                              "auto, or launch one process")
        return False
    if choice == "ddp" and "RANK" not in os.environ:
        raise ConfigError("train.distributed=ddp needs the torchrun environment (RANK, WORLD_SIZE): "
                          "launch with torchrun --nproc_per_node=N -m rlhfkit.cli ...")
    return world > 1 or choice == "ddp"


def backend_for(device: str) -> str:
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if on_cuda else "gloo"


def refuse(what: str) -> None:
    """ConfigError when a process group is running: ``what`` has no data-parallel version yet."""
    if world_size() > 1:
        from rlhfkit.config import ConfigError

        raise ConfigError(f"{what} does not run data-parallel yet: launch it as one process "
                          "(without torchrun, or with train.distributed=none)")


@contextlib.contextmanager
def session(cfg: Any) -> Iterator[None]:
    """Start the process group a config and the launch ask for (module docstring); on CUDA each
    process uses the GPU numbered by LOCAL_RANK. Ranks other than 0 only log warnings."""
    train = getattr(cfg, "train", None)
    choice = getattr(train, "distributed", None)
    if choice is None:  # a command without data-parallel training
        if launched_world() > 1:
            from rlhfkit.config import ConfigError

            raise ConfigError("this command runs in one process: launch it without torchrun")
        yield
        return
    if not wanted(choice):
        yield
        return
    import torch
    import torch.distributed as dist

    backend = backend_for(getattr(cfg, "device", "auto"))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    logger = logging.getLogger("rlhfkit")
    level = logger.level
    if dist.get_rank() != 0:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()
