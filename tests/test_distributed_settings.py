"""Two distributed settings that must hold on every rank: ``--trust_checkpoint`` in processes Lightning *spawns*
(``strategy: ddp_spawn`` starts its ranks in fresh interpreters, which inherit no context variable), and
``use_distributed_sampler: false`` (lit_lm's samplers shard themselves, so they must be told not to)."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from lit_lm.serialization import checkpoints_trusted, trust_checkpoints  # (a spawned child imports this module)


def _report_trust(queue) -> None:
    from lit_lm.serialization import checkpoints_trusted

    queue.put(checkpoints_trusted())


def _spawned_trust() -> bool:
    ctx = mp.get_context("spawn")  # how ddp_spawn starts its ranks
    queue = ctx.Queue()
    process = ctx.Process(target=_report_trust, args=(queue,))
    process.start()
    value = queue.get(timeout=120)
    process.join(timeout=60)
    return value


def test_trust_reaches_spawned_processes_and_only_inside_the_block():
    assert _spawned_trust() is False
    with trust_checkpoints():
        assert checkpoints_trusted() and _spawned_trust() is True
        other: list[bool] = []
        thread = threading.Thread(target=lambda: other.append(checkpoints_trusted()))
        thread.start()
        thread.join()
        assert other == [False]  # another thread of this process is not opted in
    assert not checkpoints_trusted()


class _Connector:
    def __init__(self, use_distributed_sampler: bool) -> None:
        self.use_distributed_sampler = use_distributed_sampler


class _Trainer:
    world_size = 2

    def __init__(self, use_distributed_sampler: bool) -> None:
        self._accelerator_connector = _Connector(use_distributed_sampler)


@pytest.mark.parametrize("use_distributed_sampler", [True, False])
def test_samplers_shard_only_when_the_trainer_says_so(use_distributed_sampler, monkeypatch, tmp_path):
    import torch

    from lit_lm.data import NLIDataModule

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # rank 1 of 2
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a: 1)
    dm = NLIDataModule(batch_size=8, cache_dir=str(tmp_path))
    dm.trainer = _Trainer(use_distributed_sampler)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    items = list(sampler)
    n = len(dm.datasets["train"])
    if use_distributed_sampler:
        assert len(items) == (n + 1) // 2 and sampler.rank == 1  # this rank's shard
    else:
        assert sorted(items) == list(range(n))  # every rank iterates all of it, as the user asked
