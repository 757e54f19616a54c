"""Reward-model evaluation: accuracy (ties apart), loss, margin statistics and calibration error
over groups, ensemble member rewards, and ``rlhfkit rm eval`` on a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rlhfkit.config import ConfigError
from rlhfkit.models.reward import encode_group
from rlhfkit.run import resolve_device, truncation_report

from rlhfkit.stages.reward_groups import Group, LazyBatch, group_losses, weights_of

if TYPE_CHECKING:
    from rlhfkit.models.frozen_cache import FrozenCache
    from rlhfkit.stages.reward_config import Objective, RewardConfig


# --------------------------------------------------------------------------------------------------
# evaluation


def ordered_pairs(group: Group) -> list[tuple[int, int, float]]:
    """(better index, worse index, label) for every comparison a group states."""
    if group.kind == "pair":
        return [(0, 1, group.label)]
    if group.kind == "listwise":
        return [(0, j, 1.0) for j in range(1, len(group.responses))]
    if group.kind == "ranking":
        n = len(group.responses)
        return [(i, j, 1.0) for i in range(n) for j in range(i + 1, n)]
    return []


def expected_calibration_error(diff, labels, n_bins: int = 10) -> float:
    """ECE of P(first better) = sigmoid(diff) against decisive ``labels`` (> 0.5 = first better).

    The predicted winner is the side with p > 0.5, confidence = max(p, 1 - p); bins split [0.5, 1]
    into ``n_bins`` equal widths; ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|
    (Guo et al. 2017). A predicted tie (p = 0.5) counts as wrong with confidence 0.5.
    """
    import torch

    diff = torch.as_tensor(diff, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.float64)
    keep = labels != 0.5
    diff, labels = diff[keep], labels[keep]
    if diff.numel() == 0:
        return float("nan")
    p = torch.sigmoid(diff)
    conf = torch.maximum(p, 1 - p)
    correct = ((p > 0.5) & (labels > 0.5)) | ((p < 0.5) & (labels < 0.5))
    bins = ((conf - 0.5) / 0.5 * n_bins).long().clamp(0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += float(in_bin.double().mean()) * abs(float(correct[in_bin].double().mean())
                                                       - float(conf[in_bin].mean()))
    return ece


def pair_metrics(r_first, r_second, labels, n_bins: int = 10) -> dict:
    """Accuracy (strict wins on decisive labels), predicted-tie rate, BCE loss (= Bradley-Terry for
    label 1), reward-margin statistics and ECE. Inputs are 1-D float tensors of equal length."""
    import torch

    from rlhfkit.losses.reward import preference_bce_loss

    r1, r2 = torch.as_tensor(r_first, dtype=torch.float64), torch.as_tensor(r_second, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    n = int(r1.numel())
    if n == 0:
        return {"pairs": 0}
    loss, st = preference_bce_loss(r1, r2, y)
    decisive = y != 0.5
    oriented = torch.where(y >= 0.5, r1 - r2, r2 - r1)[decisive]  # > 0 = agrees with the label
    out = {"pairs": n, "accuracy": float(st["accuracy"]), "tie_rate": float(st["tie_rate"]),
           "label_ties": int((~decisive).sum()), "loss": float(loss),
           "ece": expected_calibration_error(r1 - r2, y, n_bins)}
    if oriented.numel():
        out.update({"margin_mean": float(oriented.mean()), "margin_std": float(oriented.std(unbiased=False)),
                    "margin_p10": float(torch.quantile(oriented, 0.1)),
                    "margin_p50": float(torch.quantile(oriented, 0.5)),
                    "margin_p90": float(torch.quantile(oriented, 0.9))})
    return out


def compute_group_rewards(model: Any, groups: Sequence[Group], cfg_like: Any, pad_id: int,
                          device: str, cache: FrozenCache | None = None) -> list:
    """Raw rewards of every group's responses (no grad), as lists of floats in group order."""
    import torch

    from rlhfkit.data.collate import bucketed_batches
    from rlhfkit.data.collate import collate_plain, collate_shared_prefix
    from rlhfkit.models.reward import batch_to, group_rewards

    collate = collate_shared_prefix if getattr(cfg_like, "prefix_sharing", True) else collate_plain
    size = getattr(cfg_like, "eval_batch_size", 16)
    out: list = [None] * len(groups)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in bucketed_batches([len(g) for g in groups], size, 0, 0, shuffle=False):
                batch = LazyBatch([groups[i] for i in b], collate, pad_id, cache)
                tensors = batch_to(batch.tensors(), device)
                rewards = group_rewards(model, tensors).float().cpu()
                for row, i in enumerate(b):
                    out[i] = rewards[row, :len(groups[i].responses)].tolist()
    finally:
        model.train(was_training)
    return out


def group_metrics(groups: Sequence[Group], rewards: Sequence[Sequence[float]], objective: Objective) -> dict:
    """Dev metrics: pairwise ones over every stated comparison, plus each component's loss and the
    mixed total (the training objective on dev)."""
    import torch

    from rlhfkit.losses.reward import mixed_reward_loss

    first, second, labels = [], [], []
    for g, r in zip(groups, rewards):
        for i, j, y in ordered_pairs(g):
            first.append(r[i]), second.append(r[j]), labels.append(y)
    out = {}
    if first:
        out.update(pair_metrics(torch.tensor(first), torch.tensor(second), torch.tensor(labels)))
        out["pair_loss"] = out.pop("loss")
    k_max = max(len(r) for r in rewards)
    padded = torch.tensor([list(r) + [0.0] * (k_max - len(r)) for r in rewards], dtype=torch.float64)
    losses, stats = group_losses(padded, groups, objective)
    if losses:
        total, mix = mixed_reward_loss(losses, weights_of(objective))
        out["loss"] = float(total)
        out.update({k: float(v) for k, v in mix.items() if k.endswith("/loss")})
    for kind in ("score", "language"):
        if f"{kind}/mae" in stats:
            out[f"{kind}/mae"] = float(stats[f"{kind}/mae"])
    return out


def evaluate(model: Any, groups: Sequence[Group], cfg: RewardConfig, pad_id: int, device: str,
             cache: FrozenCache | None = None) -> dict:
    rewards = compute_group_rewards(model, groups, cfg, pad_id, device, cache)
    return group_metrics(groups, rewards, cfg.objective)



def member_rewards(members: Sequence, groups: Sequence[Group], cfg_like: Any, device: str,
                   normalize: bool = True, cache: FrozenCache | None = None):
    """``[M, R]``: every member's (normalised) reward of every response, groups flattened in order."""
    import torch

    from rlhfkit.models.reward import normalize_scores

    rows = []
    for m in members:
        rewards = compute_group_rewards(m.model, groups, cfg_like, m.tokenizer.pad_token_id, device, cache)
        flat = torch.tensor([x for r in rewards for x in r], dtype=torch.float64)
        rows.append(normalize_scores(flat, m.normalization) if normalize else flat)
    return torch.stack(rows)


def regroup(flat: Sequence[float], groups: Sequence[Group]) -> list[list[float]]:
    out, at = [], 0
    for g in groups:
        out.append(list(flat[at:at + len(g.responses)]))
        at += len(g.responses)
    return out



# --------------------------------------------------------------------------------------------------
# rlhfkit rm eval


@dataclass
class EvalSettings:
    """What ``compute_group_rewards`` needs when there is no RewardConfig (``rm eval``)."""

    eval_batch_size: int = 16
    prefix_sharing: bool = True


@dataclass
class EvalResult:
    model: str
    data: str
    metrics: dict
    members: list = field(default_factory=list)  # per-member metrics for an ensemble
    disagreement: float | None = None
    units: str = "raw"
    out: Path | None = None
    read_report: str = ""


def evaluate_file(model_path: str, data: str, out: str | None = None, kind: str = "pairs",
                  batch_size: int = 16, reduce: str = "mean", c: float = 1.0,
                  device: str = "auto") -> EvalResult:
    """Score every pair of ``data`` (rankings: all ordered pairs) and compute accuracy, loss, margin
    statistics and ECE. A single model is judged on raw rewards (the scale its loss used); an
    ensemble on its reduced normalised member rewards, plus per-member metrics and disagreement."""
    from rlhfkit.data.records import ranking_to_pairs
    from rlhfkit.data.sources import load
    from rlhfkit.models.reward import RewardEnsemble, load_reward_model, reduce_members

    device = resolve_device(device)
    rm = load_reward_model(model_path, device=device)
    result = load(data, kind)
    pairs = result.records if kind == "pairs" else [p for r in result.records for p in ranking_to_pairs(r)]
    if not pairs:
        raise ConfigError(f"--data {data}: no usable pairs to evaluate")
    tok = rm.tokenizer
    groups = []
    for p in pairs:
        prompt_ids, responses, cut = encode_group(tok, p.prompt, [p.chosen, p.rejected], rm.max_length)
        groups.append(Group("pair", prompt_ids, responses, label=float(p.label), truncated=cut, source=p.source))
    truncation_report("evaluation pairs", sum(g.truncated for g in groups), len(groups), rm.max_length)
    settings = EvalSettings(eval_batch_size=batch_size)
    members = rm.members if isinstance(rm, RewardEnsemble) else [rm]
    normalize = len(members) > 1 and all(m.normalization for m in members)
    per = member_rewards(members, groups, settings, device, normalize=normalize)  # [M, 2N]
    scores = reduce_members(per, reduce, c) if len(members) > 1 else per[0]
    labels = [g.label for g in groups]
    metrics = pair_metrics(scores[0::2], scores[1::2], labels)
    member_metrics = [pair_metrics(m[0::2], m[1::2], labels) for m in per] if len(members) > 1 else []
    spread = per.std(dim=0, unbiased=False) if len(members) > 1 else None
    written = None
    if out:
        written = write_pair_scores(Path(out), pairs, scores, per if len(members) > 1 else None, spread)
    return EvalResult(model=str(model_path), data=data, metrics=metrics, members=member_metrics,
                      disagreement=float(spread.mean()) if spread is not None else None,
                      units="normalized" if normalize else "raw", out=written, read_report=result.report())


def write_pair_scores(path: Path, pairs: Sequence, scores, per_member, spread) -> Path:
    """One JSON line per pair: rewards, margin, P(chosen better), correctness (+ member scores)."""
    import torch

    from rlhfkit.utils.io import atomic_write_jsonl

    rows = []
    for i, p in enumerate(pairs):
        rc, rr = float(scores[2 * i]), float(scores[2 * i + 1])
        row = {"index": i, "source": p.source, "label": p.label, "r_chosen": round(rc, 6),
               "r_rejected": round(rr, 6), "margin": round(rc - rr, 6),
               "p_chosen": round(float(torch.sigmoid(torch.tensor(rc - rr))), 6),
               "correct": (rc > rr) if p.label > 0.5 else (rc < rr) if p.label < 0.5 else None}
        if per_member is not None:
            row["members_chosen"] = [round(float(x), 6) for x in per_member[:, 2 * i]]
            row["members_rejected"] = [round(float(x), 6) for x in per_member[:, 2 * i + 1]]
            row["disagreement"] = round(float(spread[2 * i:2 * i + 2].mean()), 6)
        rows.append(row)
    atomic_write_jsonl(path, rows)
    return path


def print_eval(result: EvalResult) -> None:
    m = result.metrics
    print(f"{result.read_report}")
    print(f"reward model {result.model} on {result.data}: {m['pairs']} pairs ({result.units} rewards)")
    print(f"accuracy {m['accuracy']:.4f} (r_chosen > r_rejected; predicted ties {m['tie_rate']:.4f} "
          f"counted apart; {m['label_ties']} tie labels excluded)")
    print(f"mean loss {m['loss']:.4f} (-log sigmoid(r_chosen - r_rejected); BCE for soft labels)")
    if "margin_mean" in m:
        print(f"reward margin r_chosen - r_rejected: mean {m['margin_mean']:.4f}, std {m['margin_std']:.4f}, "
              f"p10 {m['margin_p10']:.4f}, median {m['margin_p50']:.4f}, p90 {m['margin_p90']:.4f}")
    print(f"calibration: ECE {m['ece']:.4f} (10 bins of confidence max(p, 1-p), p = sigmoid(r_c - r_r))")
    for i, mm in enumerate(result.members):
        print(f"  member {i}: accuracy {mm['accuracy']:.4f}, loss {mm['loss']:.4f}")
    if result.disagreement is not None:
        print(f"member disagreement (mean std of normalised rewards across members): {result.disagreement:.4f}")
    if result.out:
        print(f"per-pair scores: {result.out}")
    print(f"RESULT name=rm_eval accuracy={m['accuracy']:.4f} loss={m['loss']:.4f} ece={m['ece']:.4f} "
          f"pairs={m['pairs']}")


