"""Reward-model training data as *groups*: one prompt and K responses (a pair, a ranking, one
preferred and several rejected, or one scored response), the unit the objectives and the
shared-prefix rows work on. Feedback records -> groups (language feedback through a judge model),
length-bucketed micro-batches of groups, and the configured objective's loss over a batch."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from rlhfkit.config import ConfigError
from rlhfkit.models.reward import encode_group
from rlhfkit.run import say, truncation_report

if TYPE_CHECKING:
    from rlhfkit.models.frozen_cache import FrozenCache
    from rlhfkit.stages.reward_config import Objective, RewardConfig

COMPARE_KINDS = ("pair", "ranking", "listwise")


# --------------------------------------------------------------------------------------------------
# data: records -> groups (one prompt, K responses)


@dataclass
class Group:
    """One training row. ``kind``: pair (responses = [chosen, rejected]), ranking (best first),
    listwise (preferred first), score or language (one response, ``target`` = regression target)."""

    kind: str
    prompt_ids: list
    responses: list
    label: float = 1.0
    margin: float = 0.0
    target: float = 0.0
    truncated: bool = False
    source: str = ""

    def __len__(self) -> int:
        return len(self.prompt_ids) + sum(len(r) for r in self.responses)

    @property
    def component(self) -> str:
        return "compare" if self.kind in COMPARE_KINDS else self.kind


def pair_groups(pairs: Sequence, tokenizer: Any, cfg: RewardConfig, pairwise: str | None = None) -> list[Group]:
    from rlhfkit.data.records import DataError

    pairwise = pairwise or cfg.objective.pairwise
    if pairwise == "listwise":
        return listwise_groups(pairs, tokenizer, cfg)
    out = []
    for p in pairs:
        if pairwise == "bradley_terry" and p.label != 1.0:
            raise DataError(p.source or "pairs", "label", f"{p.label}: soft or tie labels need "
                            "objective.pairwise=bce (Bradley-Terry assumes chosen is better)")
        prompt_ids, responses, cut = encode_group(tokenizer, p.prompt, [p.chosen, p.rejected], cfg.max_length)
        margin = float(p.margin) if (cfg.objective.use_margin and p.margin is not None) else 0.0
        out.append(Group("pair", prompt_ids, responses, label=float(p.label), margin=margin,
                         truncated=cut, source=p.source))
    return out


def listwise_groups(pairs: Sequence, tokenizer: Any, cfg: RewardConfig) -> list[Group]:
    """Pairs with the same prompt and chosen response -> one preferred vs all its rejected ones."""
    from rlhfkit.data.records import DataError

    merged: dict = {}
    for p in pairs:
        if p.label != 1.0:
            raise DataError(p.source or "pairs", "label", f"{p.label}: listwise needs decisive pairs "
                            "(label 1); use objective.pairwise=bce for soft labels")
        entry = merged.setdefault((p.prompt, p.chosen), [p.source, []])
        if p.rejected not in entry[1]:
            entry[1].append(p.rejected)
    out = []
    for (prompt, chosen), (source, rejected) in merged.items():
        prompt_ids, responses, cut = encode_group(tokenizer, prompt, [chosen, *rejected], cfg.max_length)
        out.append(Group("listwise", prompt_ids, responses, truncated=cut, source=source))
    return out


def ranking_groups(rankings: Sequence, tokenizer: Any, cfg: RewardConfig) -> list[Group]:
    from rlhfkit.data.records import ranking_to_pairs

    if cfg.objective.ranking == "pairs":
        pairs = [pair for r in rankings for pair in ranking_to_pairs(r)]
        pairwise = "bradley_terry" if cfg.objective.pairwise == "listwise" else cfg.objective.pairwise
        return pair_groups(pairs, tokenizer, cfg, pairwise)
    kind = "ranking" if cfg.objective.ranking == "plackett_luce" else "listwise"
    out = []
    for r in rankings:
        ordered = [r.responses[i] for i in r.ranking]  # best first
        prompt_ids, responses, cut = encode_group(tokenizer, r.prompt, ordered, cfg.max_length)
        out.append(Group(kind, prompt_ids, responses, truncated=cut, source=r.source))
    return out


def target_scaler(values: Sequence[float], mode: str):
    """Score targets -> regression targets: standardised (per source) or raw."""
    if mode == "raw" or not values:
        return lambda v: float(v)
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
    return lambda v: (float(v) - mean) / std


def score_groups(records: Sequence, scores: Sequence[float], kind: str, tokenizer: Any,
                 cfg: RewardConfig, scale) -> list[Group]:
    out = []
    for record, value in zip(records, scores):
        prompt_ids, responses, cut = encode_group(tokenizer, record.prompt, [record.response], cfg.max_length)
        out.append(Group(kind, prompt_ids, responses, target=scale(value), truncated=cut,
                         source=record.source))
    return out


def read_sources(specs: str, kind: str, limit: int) -> list[tuple[str, list]]:
    """Comma-separated sources -> [(spec, records)], reporting what each reader kept and dropped."""
    from rlhfkit.data.sources import load

    out = []
    for spec in [s.strip() for s in specs.split(",") if s.strip()]:
        result = load(spec, kind, limit=limit or None)
        say(result.report())
        out.append((spec, result.records))
    return out


@dataclass
class Datasets:
    train: list
    dev: list
    judged: list = field(default_factory=list)  # (record, judge score) for language feedback


def load_datasets(cfg: RewardConfig, tokenizer: Any, device: str) -> Datasets:
    """Read every source, split dev, encode groups; judge language feedback."""
    from rlhfkit.data.sources import split_dev

    seed, frac = cfg.train.seed, (0.0 if cfg.data.dev else cfg.data.dev_fraction)
    train, dev = [], []
    for _, pairs in read_sources(cfg.data.train, "pairs", cfg.data.max_examples):
        tr, dv = split_dev(pairs, frac, seed)
        train += pair_groups(tr, tokenizer, cfg)
        dev += pair_groups(dv, tokenizer, cfg)
    for _, rankings in read_sources(cfg.data.rankings, "rankings", cfg.data.max_examples):
        tr, dv = split_dev(rankings, frac, seed)
        train += ranking_groups(tr, tokenizer, cfg)
        dev += ranking_groups(dv, tokenizer, cfg)
    for _, records in read_sources(cfg.data.scores, "scores", cfg.data.max_examples):
        tr, dv = split_dev(records, frac, seed)
        scale = target_scaler([r.score for r in tr], cfg.objective.score_targets)
        train += score_groups(tr, [r.score for r in tr], "score", tokenizer, cfg, scale)
        dev += score_groups(dv, [r.score for r in dv], "score", tokenizer, cfg, scale)
    judged = []
    for _, records in read_sources(cfg.data.language, "language", cfg.data.max_examples):
        values = judge_language_feedback(records, cfg.objective.judge, device, cfg.objective.judge_batch_size)
        judged += list(zip(records, values))
        both = list(zip(records, values))
        tr, dv = split_dev(both, frac, seed)
        scale = target_scaler([v for _, v in tr], cfg.objective.score_targets)
        train += score_groups([r for r, _ in tr], [v for _, v in tr], "language", tokenizer, cfg, scale)
        dev += score_groups([r for r, _ in dv], [v for _, v in dv], "language", tokenizer, cfg, scale)
    if cfg.data.dev:
        for _, pairs in read_sources(cfg.data.dev, "pairs", 0):
            dev += pair_groups(pairs, tokenizer, cfg)
    truncation_report("reward-model groups", sum(g.truncated for g in train), len(train), cfg.max_length)
    return Datasets(train=train, dev=dev, judged=judged)


# --------------------------------------------------------------------------------------------------
# language feedback -> score (a judge model)

JUDGE_PROMPT = (
    "A reviewer wrote a critique of an assistant's answer to a question.\n\n"
    "Question: {question}\n\nAnswer: {response}\n\nCritique: {feedback}\n\n"
    "Based on the critique, rate the answer's quality from 1 (very bad) to 7 (excellent). "
    "Reply with a single digit.")
JUDGE_DIGITS = "1234567"


def judge_prompt(record: Any) -> tuple:
    from rlhfkit.data.records import Message

    question = "\n".join(m.content for m in record.prompt if m.role == "user")
    return (Message("user", JUDGE_PROMPT.format(question=question, response=record.response,
                                                feedback=record.feedback)),)


def digit_ids(tokenizer: Any) -> list[int]:
    ids = []
    for d in JUDGE_DIGITS:
        encoded = tokenizer(d, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ConfigError(f"judge: the tokenizer splits the digit {d!r} into {len(encoded)} tokens")
        ids.append(encoded[0])
    return ids


def expected_rating(digit_logits) -> Any:
    """``digit_logits [B, 7]`` (next-token logits of "1".."7") -> expected rating ``[B]`` in [1, 7]:
    sum_d d * softmax(logits)_d over the seven digits only."""
    import torch

    probs = torch.softmax(digit_logits.float(), dim=-1)
    values = torch.arange(1, len(JUDGE_DIGITS) + 1, dtype=probs.dtype, device=probs.device)
    return (probs * values).sum(dim=-1)


def judge_language_feedback(records: Sequence, judge: str, device: str = "cpu",
                            batch_size: int = 8) -> list[float]:
    """Ask a causal LM to rate each critique's verdict 1-7; read the next-token distribution."""
    import torch

    from rlhfkit.data.collate import pad
    from rlhfkit.data.tokenize import encode_prompt
    from rlhfkit.models.forward import logits_at
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.models.reward import position_ids_from_mask

    if not records:
        return []
    say(f"judging {len(records)} language-feedback records with the {judge} model")
    model, tok = load_causal_lm(judge, device=device)
    model.eval()
    digits = torch.tensor(digit_ids(tok))
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            seqs = [encode_prompt(tok, judge_prompt(r)) for r in records[start:start + batch_size]]
            ids = pad(seqs, tok.pad_token_id, side="left").to(device)
            mask = pad([[1] * len(s) for s in seqs], 0, side="left").to(device)
            select = torch.zeros_like(mask, dtype=torch.bool)
            select[:, -1] = True
            logits = logits_at(model, ids, mask, select, position_ids_from_mask(mask))  # [B, V]
            scores += expected_rating(logits[:, digits.to(logits.device)]).tolist()
    del model
    return scores


# --------------------------------------------------------------------------------------------------
# batches and the loss


def make_batches(groups: Sequence[Group], cfg: RewardConfig, pad_id: int, epoch: int,
                 shuffle: bool = True, size: int | None = None, cache: "FrozenCache | None" = None) -> list:
    """Length-bucketed micro-batches of groups, collated when used."""
    from rlhfkit.data.collate import bucketed_batches, collate_plain, collate_shared_prefix

    size = size or cfg.train.micro_batch_size
    order = bucketed_batches([len(g) for g in groups], size, cfg.train.seed, epoch, shuffle)
    collate = collate_shared_prefix if cfg.prefix_sharing else collate_plain
    return [LazyBatch([groups[i] for i in b], collate, pad_id, cache) for b in order]


class LazyBatch:
    """A micro-batch collated when first used (an epoch of 4D masks would not fit in memory)."""

    def __init__(self, groups: list, collate, pad_id: int, cache: "FrozenCache | None" = None):
        self.groups, self._collate, self._pad, self._cache = groups, collate, pad_id, cache

    def tensors(self) -> dict:
        tensors = self._collate([(g.prompt_ids, g.responses) for g in self.groups], self._pad)
        if self._cache is not None:
            tensors["hidden_in"] = self._cache.hidden_for(self.groups, tensors["input_ids"].shape[1])
            tensors["start_layer"] = self._cache.n_layers
        return tensors



def group_losses(rewards, groups: Sequence[Group], objective: Objective) -> tuple[dict, dict]:
    """``rewards [B, K]`` (0 past each group's K) -> per-component losses and stats.

    compare = the row-weighted mean over the comparison kinds present (pair: Bradley-Terry or BCE;
    ranking: Plackett-Luce; listwise: softmax cross-entropy); score / language = MSE.
    """
    import torch

    from rlhfkit.losses.reward import (
        bradley_terry_loss,
        listwise_loss,
        plackett_luce_loss,
        preference_bce_loss,
        score_regression_loss,
    )

    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_kind[g.kind].append(i)
    dev = rewards.device
    losses: dict = {}
    stats: dict = {}
    compare_parts = []
    if "pair" in by_kind:
        idx = torch.tensor(by_kind["pair"], device=dev)
        r = rewards[idx]
        if objective.pairwise == "bce":
            labels = torch.tensor([groups[i].label for i in by_kind["pair"]], device=dev, dtype=r.dtype)
            loss, st = preference_bce_loss(r[:, 0], r[:, 1], labels)
        else:
            margins = torch.tensor([groups[i].margin for i in by_kind["pair"]], device=dev, dtype=r.dtype)
            loss, st = bradley_terry_loss(r[:, 0], r[:, 1], margins)
        compare_parts.append((loss, len(idx)))
        stats.update({f"pair/{k}": v for k, v in st.items()})
    for kind, fn in (("ranking", plackett_luce_loss), ("listwise", listwise_loss)):
        if kind in by_kind:
            idx = by_kind[kind]
            k_max = max(len(groups[i].responses) for i in idx)
            r = rewards[torch.tensor(idx, device=dev)][:, :k_max]
            valid = torch.tensor([[k < len(groups[i].responses) for k in range(k_max)] for i in idx],
                                 device=dev)
            loss, st = fn(r, valid_mask=valid)
            compare_parts.append((loss, len(idx)))
            stats.update({f"{kind}/{k}": v for k, v in st.items()})
    if compare_parts:
        total_rows = sum(n for _, n in compare_parts)
        losses["compare"] = sum(loss * (n / total_rows) for loss, n in compare_parts)
    for kind in ("score", "language"):
        if kind in by_kind:
            idx = by_kind[kind]
            targets = torch.tensor([groups[i].target for i in idx], device=dev, dtype=rewards.dtype)
            loss, st = score_regression_loss(rewards[torch.tensor(idx, device=dev), 0], targets)
            losses[kind] = loss
            stats.update({f"{kind}/{k}": v for k, v in st.items()})
    return losses, stats


def weights_of(objective: Objective) -> dict:
    w = objective.weights
    return {"score": w.score, "compare": w.compare, "language": w.language}


