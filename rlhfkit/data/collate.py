"""Batching: length bucketing, padding and (optional) packing.

Bucketing sorts examples by length inside shuffled "mega-batches" of ``bucket_factor`` batches, so
each micro-batch holds similar lengths (little padding) while the order stays random; the batch
order is then shuffled. Everything is a pure function of ``(seed, epoch)`` so resumed runs see the
same order.
"""

from __future__ import annotations

import random
from typing import Sequence

IGNORE_INDEX = -100


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                     shuffle: bool = True, bucket_factor: int = 32) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng = random.Random(seed * 100003 + epoch)
    if shuffle:
        rng.shuffle(order)
    batches = []
    span = batch_size * bucket_factor
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad(seqs: Sequence[Sequence[int]], value: int, side: str = "right", to: int | None = None):
    """Pad lists of ints into a LongTensor ``[B, L]``."""
    import torch

    width = max(len(s) for s in seqs) if to is None else to
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for row, seq in enumerate(seqs):
        if not seq:
            continue
        if side == "right":
            out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        else:
            out[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
    return out


def collate_sft(examples: Sequence, pad_id: int) -> dict:
    """``examples``: Encoded items -> input_ids/attention_mask/labels ``[B, L]`` (right padding);
    labels are -100 on prompt and padding positions, so only response tokens carry loss."""
    ids = [e.input_ids for e in examples]
    labels = [[IGNORE_INDEX] * len(e.prompt_ids) + list(e.response_ids) for e in examples]
    input_ids = pad(ids, pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": pad([[1] * len(s) for s in ids], 0),
        "labels": pad(labels, IGNORE_INDEX),
    }


def pack_examples(examples: Sequence, max_length: int) -> list[list[int]]:
    """Greedy first-fit packing of example indices into rows of at most ``max_length`` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(examples)), key=lambda i: -len(examples[i])):
        size = len(examples[index])
        for r, free in enumerate(room):
            if size <= free:
                rows[r].append(index)
                room[r] -= size
                break
        else:
            rows.append([index])
            room.append(max_length - size)
    return rows


def collate_packed(rows: Sequence[Sequence], pad_id: int, dtype=None) -> dict:
    """Each row is a list of Encoded examples laid end to end. Attention is block-diagonal
    (a 4D additive mask: no token attends across an example boundary) and position ids restart at
    0 for each example, so a packed row computes exactly what the separate examples would."""
    import torch

    dtype = dtype or torch.float32
    width = max(sum(len(e) for e in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    allowed = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
    token_mask = torch.zeros((len(rows), width), dtype=torch.bool)  # real (non-padding) tokens
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e)
            input_ids[r, at:at + n] = torch.tensor(e.input_ids)
            labels[r, at + len(e.prompt_ids):at + n] = torch.tensor(e.response_ids)
            position_ids[r, at:at + n] = torch.arange(n)
            allowed[r, 0, at:at + n, at:at + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
            at += n
        token_mask[r, :at] = True
        allowed[r, 0, at:, at:] = torch.eye(width - at, dtype=torch.bool)  # padding sees itself
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids,
            "labels": labels, "token_mask": token_mask}
