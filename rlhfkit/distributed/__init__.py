"""torch.distributed glue: the only place in rlhfkit that touches ``torch.distributed``.

- :mod:`rlhfkit.distributed.group`: the process group a ``torchrun`` launch asks for
  (``train.distributed=auto|ddp|none``; gloo on CPU, NCCL on CUDA), this process's rank and the
  world size, rank-0-only logging, barriers.
- :mod:`rlhfkit.distributed.data_parallel`: what the supervised step needs to run data-parallel
  (DDP with ``no_sync`` on all but the last micro-batch, the global accumulation weight, the
  rank's share of the step's micro-batches, statistics summed over ranks).

Both are imported lazily; a single-process run never initialises a process group.
"""
