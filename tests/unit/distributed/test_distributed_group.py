"""train.distributed choices against the launch environment, and how a step's micro-batches are
shared out between ranks (no process group needed)."""

from types import SimpleNamespace

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.distributed.data_parallel import Replicas
from rlhfkit.distributed.group import session, wanted


def launch_env(monkeypatch, world=None):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    if world is not None:
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", str(world))


def test_auto_starts_a_group_only_when_torchrun_starts_several_processes(monkeypatch):
    launch_env(monkeypatch)
    assert not wanted("auto") and not wanted("none")
    launch_env(monkeypatch, world=1)
    assert not wanted("auto") and wanted("ddp")
    launch_env(monkeypatch, world=2)
    assert wanted("auto") and wanted("ddp")


def test_choices_that_cannot_work_are_one_line_errors(monkeypatch):
    launch_env(monkeypatch, world=2)
    with pytest.raises(ConfigError, match="train.distributed=none, but torchrun started 2"):
        wanted("none")
    launch_env(monkeypatch)
    with pytest.raises(ConfigError, match="needs the torchrun environment"):
        wanted("ddp")
    launch_env(monkeypatch, world=2)
    with pytest.raises(ConfigError, match="runs in one process"):  # a command without train.distributed
        with session(SimpleNamespace()):
            pass


def test_ranks_share_each_step_like_one_process_with_more_accumulation():
    one = Replicas()
    ranks = [Replicas() for _ in range(2)]
    for r, replicas in enumerate(ranks):
        replicas.world, replicas.rank = 2, r
    for step in range(3):
        shared = sorted(p for replicas in ranks for p in replicas.positions(step, grad_accum=2))
        assert shared == one.positions(step, grad_accum=4)  # 1 process at grad_accum 4 = 2 x 2
    assert ranks[1].positions(1, grad_accum=2) == [6, 7]


def test_one_process_is_the_identity():
    replicas = Replicas(compute=lambda batch: batch * 2)
    assert replicas.forward(3) == 6 and replicas.grad_scale == 1 and replicas.sum([1.5, 2]) == [1.5, 2]
    window = [{"loss": 1.0}, {"loss": 3.0}]
    assert replicas.reduce_window(window, 10, 2) == (window, 10, 2) and replicas.any(True)
