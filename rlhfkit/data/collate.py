"""Batching: length bucketing, padding, (optional) packing and shared-prefix rows.

Bucketing sorts examples by length inside shuffled "mega-batches" of ``bucket_factor`` batches, so
each micro-batch holds similar lengths (little padding) while the order stays random; the batch
order is then shuffled. Everything is a pure function of ``(seed, epoch)`` so resumed runs see the
same order.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple, Sequence

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
    return {"input_ids": input_ids, "attention_mask": additive_mask(allowed, dtype),
            "position_ids": position_ids, "labels": labels, "token_mask": token_mask}


def additive_mask(allowed: Any, dtype: Any) -> Any:
    """bool ``[B, 1, W, W]`` -> additive float mask (0 where allowed, dtype-min elsewhere)."""
    import torch

    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


class SharedPrefixRows(NamedTuple):
    """Rows ``[P | R_1 | ... | R_K | pad]`` (see :func:`shared_prefix_rows`)."""

    input_ids: Any  # [B, W] long, right padded
    position_ids: Any  # [B, W] long: P 0..p-1, each R_k p..p+|R_k|-1 (as if alone after P)
    allowed: Any  # [B, 1, W, W] bool: query i may attend key j
    starts: list  # starts[b][k]: column of the first token of response k in row b


def shared_prefix_rows(groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
                       pad_id: int) -> SharedPrefixRows:
    """One group ``(prompt_ids, [response_ids, ...])`` per row: the prompt once, then every response.

    Each response attends to the prompt and causally to itself (never to another response), and its
    position ids continue from the prompt, so each computes exactly what a separate
    ``prompt + response`` forward pass would while the prompt runs once. Padding attends to itself
    only (keeps softmax finite). Responses must not be empty (they end with EOS)."""
    import torch

    width = max(len(p) + sum(len(r) for r in responses) for p, responses in groups)
    input_ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(groups), width), dtype=torch.long)
    allowed = torch.zeros((len(groups), 1, width, width), dtype=torch.bool)
    starts = []
    for b, (prompt, responses) in enumerate(groups):
        n_p = len(prompt)
        if n_p:
            input_ids[b, :n_p] = torch.tensor(list(prompt))
            position_ids[b, :n_p] = torch.arange(n_p)
            allowed[b, 0, :n_p, :n_p] = torch.ones(n_p, n_p, dtype=torch.bool).tril()
        at, row_starts = n_p, []
        for k, response in enumerate(responses):
            n = len(response)
            if n == 0:
                raise ValueError(f"group {b}: response {k} is empty (responses end with EOS)")
            input_ids[b, at:at + n] = torch.tensor(list(response))
            position_ids[b, at:at + n] = torch.arange(n_p, n_p + n)
            allowed[b, 0, at:at + n, :n_p] = True
            allowed[b, 0, at:at + n, at:at + n] = torch.ones(n, n, dtype=torch.bool).tril()
            row_starts.append(at)
            at += n
        allowed[b, 0, at:, at:] = torch.eye(width - at, dtype=torch.bool)
        starts.append(row_starts)
    return SharedPrefixRows(input_ids, position_ids, allowed, starts)


def collate_shared_prefix(groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int,
                          dtype=None) -> dict:
    """Rows ``[P | R_1 | ... | R_K | pad]`` (:func:`shared_prefix_rows`), for scoring every response.

    Returns ``input_ids [B, L]``, ``position_ids [B, L]`` (P: 0..p-1, each R_k: p..p+|R_k|-1),
    ``attention_mask [B, 1, L, L]`` additive float (R_k attends to P and causally to itself; padding
    attends to itself only, keeping softmax finite), ``ends [B, K]`` (position of each response's
    last token), ``valid [B, K]`` bool (rows with fewer than K responses) and ``tokens`` (real tokens).
    """
    import torch

    rows = shared_prefix_rows(groups, pad_id)
    k_max = max(len(responses) for _, responses in groups)
    ends = torch.zeros((len(groups), k_max), dtype=torch.long)
    valid = torch.zeros((len(groups), k_max), dtype=torch.bool)
    for b, (_, responses) in enumerate(groups):
        for k, response in enumerate(responses):
            ends[b, k], valid[b, k] = rows.starts[b][k] + len(response) - 1, True
    tokens = sum(len(p) + sum(len(r) for r in responses) for p, responses in groups)
    return {"input_ids": rows.input_ids, "position_ids": rows.position_ids,
            "attention_mask": additive_mask(rows.allowed, dtype or torch.float32),
            "ends": ends, "valid": valid, "tokens": tokens}


def collate_plain(groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int) -> dict:
    """The reference layout: one (prompt + response) per row, right padded; ``rows [B, K]`` maps
    each group's k-th response to its row (the same ``valid`` as :func:`collate_shared_prefix`)."""
    import torch

    k_max = max(len(responses) for _, responses in groups)
    seqs, rows = [], torch.zeros((len(groups), k_max), dtype=torch.long)
    valid = torch.zeros((len(groups), k_max), dtype=torch.bool)
    for b, (prompt, responses) in enumerate(groups):
        for k, response in enumerate(responses):
            rows[b, k], valid[b, k] = len(seqs), True
            seqs.append(list(prompt) + list(response))
    return {"input_ids": pad(seqs, pad_id), "attention_mask": pad([[1] * len(s) for s in seqs], 0),
            "rows": rows, "valid": valid, "tokens": sum(len(s) for s in seqs)}
