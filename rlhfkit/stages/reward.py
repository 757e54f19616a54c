"""Stage 2: reward model training and evaluation (SPEC section 4).

Recipe: load the SFT model as a scalar-head reward model -> read and encode feedback (pairs,
rankings, scores, language feedback through a judge) into *groups* (one prompt, K responses) ->
train with the objective chosen by config (Bradley-Terry, soft-label BCE, listwise, Plackett-Luce,
score regression, or a weighted mix), early stopping on dev accuracy -> measure the reward mean/std
on a reference set and store it with the model -> (ensembles: repeat with other seeds) -> report.

Speed: a group is one row ``[prompt | response_1 | ... | response_K]`` with a tree attention mask
(rlhfkit.data.collate.collate_shared_prefix), so the prompt is computed once for all of its
responses, forward and backward; rows are bucketed by length so there is little padding; no LM head
runs. Losses come from rlhfkit.losses.reward.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.config import ConfigError
from rlhfkit.models.frozen_cache import FrozenCache
from rlhfkit.models.reward import encode_group
from rlhfkit.run import prepare_output, resolve_device, say, say_trainable, seed_everything, warn
from rlhfkit.stages.reward_config import RewardConfig
from rlhfkit.stages.reward_eval import (compute_group_rewards, evaluate, group_metrics, member_rewards,
                                        ordered_pairs, regroup)
from rlhfkit.stages.reward_groups import (COMPARE_KINDS, Datasets, Group, LazyBatch, group_losses,
                                          load_datasets, make_batches, weights_of)


@dataclass
class RewardResult:
    model_dir: Path
    steps: int
    members: list = field(default_factory=list)  # per member: {"dir", "steps", "dev", "best_step"}
    dev_before: dict | None = None
    dev_after: dict | None = None
    disagreement: float | None = None
    normalization: dict | None = None
    metrics_files: list = field(default_factory=list)
    seconds: float = 0.0


def make_cache(cfg: RewardConfig, model: Any, data: "Datasets", pad_id: int, device: str,
               n_frozen: int) -> "FrozenCache | None":
    """A FrozenCache when it is valid and fits in memory, else None (with the reason said)."""
    from rlhfkit.models.reward import supports_layer_split
    from rlhfkit.train.report import available_memory

    if n_frozen <= 0 or not cfg.cache_frozen:
        return None
    if cfg.lora.enabled or not cfg.prefix_sharing or not supports_layer_split(model):
        say("frozen-layer cache off (needs prefix_sharing, no LoRA, and a decoder with .layers/.norm)")
        return None
    hidden = model.config.get_text_config().hidden_size
    need = sum(len(g) for g in list(data.train) + list(data.dev)) * hidden * next(model.parameters()).element_size()
    if need > 0.25 * available_memory(device):
        warn(f"frozen-layer cache off: it would need {need / 2**30:.1f} GiB")
        return None
    say(f"caching the output of the {n_frozen} frozen layers ({need / 2**30:.2f} GiB): later epochs "
        "and evaluations run only the trained layers")
    return FrozenCache(n_frozen, pad_id, device)


def rm_step(model: Any, batch: LazyBatch, cfg: RewardConfig, device: str, single_kind: str | None):
    """One micro-batch: one forward for all groups, the mixed loss, logged stats."""
    from rlhfkit.losses.reward import mixed_reward_loss
    from rlhfkit.models.reward import batch_to, group_rewards
    from rlhfkit.train.loop import StepOutput

    tensors = batch_to(batch.tensors(), device)
    rewards = group_rewards(model, tensors, cfg.dropout)  # [B, K]
    losses, stats = group_losses(rewards, batch.groups, cfg.objective)
    loss, mix_stats = mixed_reward_loss(losses, weights_of(cfg.objective))
    # Stats are averaged over micro-batches by the loop: only log those every micro-batch has.
    logged = {k.split("/", 1)[1]: v for k, v in stats.items() if single_kind and k.startswith(single_kind + "/")}
    logged.pop("loss", None)
    n_pairs = sum(len(g.responses) - 1 for g in batch.groups if g.kind in COMPARE_KINDS)
    return StepOutput(loss=loss, stats=logged, tokens=int(tensors["tokens"]),
                      examples=n_pairs or len(batch.groups))


# --------------------------------------------------------------------------------------------------
# model set-up


def frozen_layer_count(model: Any, n: int) -> int:
    """``freeze_layers`` -> how many layers to freeze: N >= 0 as given, N < 0 all but the top |N|."""
    from rlhfkit.models.reward import backbone_of

    total = len(backbone_of(model).layers)
    if n > total:
        raise ConfigError(f"freeze_layers={n}: the model has only {total} layers")
    return max(0, total + n) if n < 0 else n


def freeze_lower_layers(model: Any, n: int) -> None:
    """No gradients for the embeddings and the lowest ``n`` layers (``n`` = all layers: head + norm)."""
    from rlhfkit.models.reward import backbone_of

    if n <= 0:
        return
    backbone = backbone_of(model)
    if n > len(backbone.layers):
        raise ConfigError(f"freeze_layers={n}: the model has only {len(backbone.layers)} layers")
    for p in backbone.get_input_embeddings().parameters():
        p.requires_grad_(False)
    for layer in backbone.layers[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)


def set_training_dropout(model: Any, p: float, start_layer: int = 0) -> None:
    """Attention dropout in the trained layers (``start_layer`` and up) while training; module
    attributes only, so the saved config keeps dropout 0 and the exported model is deterministic."""
    from rlhfkit.models.reward import backbone_of

    if p <= 0:
        return
    for layer in backbone_of(model).layers[start_layer:]:
        for module in layer.modules():
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = p


def member_start(model: str, index: int) -> str:
    """What member ``index`` starts from: member ``index`` of an ensemble folder (a warm start from
    an earlier ensemble, e.g. the previous round of ``rlhfkit rounds``); any other model as given."""
    import json

    from rlhfkit.models.reward import ENSEMBLE_FILE

    folder = Path(model)
    if not (folder / ENSEMBLE_FILE).exists():
        return model
    names = json.loads((folder / ENSEMBLE_FILE).read_text()).get("members") or []
    if index >= len(names):
        raise ConfigError(f"model={model}: an ensemble of {len(names)} members, too few to start member "
                          f"{index} from (lower ensemble.members or start from one member folder)")
    return str(folder / names[index])


def build_model(cfg: RewardConfig, device: str, seed: int, index: int = 0):
    """(model, tokenizer, number of frozen layers); member ``index`` of an ensemble ``cfg.model``
    starts from that ensemble's member ``index``."""
    from rlhfkit.models.lora import apply_lora
    from rlhfkit.models.reward import init_reward_model

    model, tok = init_reward_model(member_start(cfg.model, index), dtype=cfg.dtype, device=device, seed=seed)
    n_frozen = frozen_layer_count(model, cfg.freeze_layers)
    freeze_lower_layers(model, n_frozen)
    set_training_dropout(model, cfg.dropout, n_frozen)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora, task_type="SEQ_CLS", modules_to_save=["score"])
    return model, tok, n_frozen


# --------------------------------------------------------------------------------------------------
# normalisation


def reference_groups(cfg: RewardConfig, data: Datasets, tokenizer: Any) -> tuple[list[Group], str]:
    """Groups holding up to about normalize.max_examples reference responses. ``train``: randomly
    chosen training groups themselves (their responses are the training responses, and the
    frozen-layer cache applies); a file: its SFT demonstrations, one response per group."""
    from rlhfkit.data.sources import load

    ref, limit = cfg.normalize.reference, cfg.normalize.max_examples
    if ref == "none" or limit <= 0:
        return [], "none"
    if ref == "train":
        order = list(range(len(data.train)))
        random.Random(cfg.train.seed).shuffle(order)
        groups, n = [], 0
        for i in order:
            if n >= limit:
                break
            groups.append(data.train[i])
            n += len(data.train[i].responses)
        return groups, f"{n} training responses"
    result = load(ref, "sft", limit=limit)
    say(result.report())
    groups = []
    for r in result.records:
        prompt_ids, responses, cut = encode_group(tokenizer, r.prompt, [r.response], cfg.max_length)
        groups.append(Group("score", prompt_ids, responses, truncated=cut))
    return groups, f"{len(groups)} demonstrations from {ref}"


def measure_normalization(model: Any, groups: list[Group], label: str, cfg: RewardConfig,
                          pad_id: int, device: str, cache: FrozenCache | None = None):
    """(normalization, calibration) from raw rewards on the reference groups; (None, None) if none."""
    from rlhfkit.models.reward import reward_summary

    if not groups:
        return None, None
    raw = [x for r in compute_group_rewards(model, groups, cfg, pad_id, device, cache) for x in r]
    summary = reward_summary(raw)
    normalization = {"mean": summary["mean"], "std": summary["std"], "n": summary["n"], "reference": label}
    return normalization, summary


# --------------------------------------------------------------------------------------------------
# training one member, then the ensemble


@dataclass
class MemberSetup:
    model: Any
    tokenizer: Any
    cfg: RewardConfig  # this member's config (own seed and output_dir)
    params: list
    cache: FrozenCache | None
    single_kind: str | None  # the only group kind in the training data, if there is one
    n_frozen: int = 0


def setup_member(cfg: RewardConfig, data: Datasets, index: int, out: Path, device: str,
                 cache: FrozenCache | None) -> MemberSetup:
    """Model, per-member config, trainable parameters, the frozen-layer cache; prints the plan."""
    from rlhfkit.train.loop import total_steps
    from rlhfkit.train.report import describe_batches

    seed = cfg.train.seed + index
    seed_everything(seed)
    model, tok, n_frozen = build_model(cfg, device, seed, index)
    member_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output_dir=str(out), seed=seed))
    params = [p for p in model.parameters() if p.requires_grad]
    steps = total_steps(member_cfg.train, len(make_batches(data.train, member_cfg, tok.pad_token_id, 0)))
    n_pairs = sum(max(1, len(g.responses) - 1) for g in data.train)
    say(describe_batches(cfg.train.micro_batch_size, cfg.train.grad_accum, len(data.train), steps, unit="groups")
        + f" ({n_pairs} comparisons/targets per epoch)")
    say_trainable(model, f"{n_frozen} lowest layers frozen, lora={cfg.lora.enabled}")
    memory_report(model, cfg.train.micro_batch_size, max(len(g) for g in data.train), n_frozen, device)
    if cache is None:
        cache = make_cache(cfg, model, data, tok.pad_token_id, device, n_frozen)
    kinds = {g.kind for g in data.train}
    return MemberSetup(model, tok, member_cfg, params, cache.bind(model) if cache else None,
                       next(iter(kinds)) if len(kinds) == 1 else None, n_frozen)


def memory_report(model: Any, micro_batch_size: int, row_length: int, n_frozen: int, device: str) -> None:
    """Peak-memory estimate for reward-model training: no LM head, and activations are kept only
    for the trained layers (frozen ones run without a graph). Same formula as
    rlhfkit.train.report.estimate_training_memory otherwise (Korthikanti et al. 2022)."""
    from rlhfkit.models.reward import backbone_of
    from rlhfkit.train.report import MemoryEstimate, available_memory

    params = list(model.parameters())
    bytes_per = params[0].element_size()
    n_train = sum(p.numel() for p in params if p.requires_grad)
    cfg = model.config.get_text_config()
    tokens = micro_batch_size * row_length
    per_layer = (34 * tokens * cfg.hidden_size + 5 * cfg.num_attention_heads * row_length * tokens) * bytes_per / 2
    trained_layers = len(backbone_of(model).layers) - n_frozen
    est = MemoryEstimate(weights=sum(p.numel() for p in params) * bytes_per, grads=n_train * bytes_per,
                         optimizer=2 * n_train * 4, activations=trained_layers * per_layer,
                         available=available_memory(device))
    if est.too_big:
        warn(est.summary() + ": this will likely run out of memory; lower micro_batch_size or max_length, "
             "freeze more layers or raise grad_accum instead")
    else:
        say(est.summary())


def train_member(cfg: RewardConfig, data: Datasets, index: int, out: Path, device: str,
                 cache: FrozenCache | None = None) -> dict:
    """Train one reward model under ``out``; returns its summary (dir, steps, dev metrics, ...)."""
    from rlhfkit.monitor.metrics import MetricLogger
    from rlhfkit.train.checkpoint import load_weights_into, save_hf_folder
    from rlhfkit.train.loop import EvalSpec, train_loop

    s = setup_member(cfg, data, index, out, device, cache)
    model, pad_id, mcfg = s.model, s.tokenizer.pad_token_id, s.cfg
    dev_metric = "accuracy" if any(ordered_pairs(g) for g in data.dev) else "loss"
    dev_before = evaluate(model, data.dev, mcfg, pad_id, device, s.cache) if data.dev else None
    if dev_before:
        say("dev before training: " + format_metrics(dev_before))
    logger = MetricLogger.for_run(out, mcfg.train, mcfg)
    result = train_loop(
        model=model, params=s.params,
        micro_batches=lambda epoch: make_batches(data.train, mcfg, pad_id, epoch, cache=s.cache),
        compute=lambda batch: rm_step(model, batch, mcfg, device, s.single_kind),
        cfg=mcfg.train, optim=cfg.optim,
        save_model=lambda folder: save_hf_folder(model, s.tokenizer, folder),
        load_model=lambda folder: load_weights_into(model, folder), logger=logger,
        evaluate=(EvalSpec(lambda: evaluate(model, data.dev, mcfg, pad_id, device, s.cache),
                           metric=dev_metric, higher_is_better=dev_metric == "accuracy") if data.dev else None),
        desc=f"rm{'' if cfg.ensemble.members == 1 else f'[{index}]'}",
        weight=lambda batch: len(batch.groups),  # the loss is a mean over groups (pairs, rankings, ...)
    )
    logger.close()
    member = finish_member(s, data, result, device)
    if cfg.lora.enabled:  # final/: the merged model and its metadata; final/adapter/: the adapter
        from rlhfkit.models.lora import save_merged

        final_dir = save_merged(s.model, s.tokenizer, result.final_dir, extra=member.info.write,
                                merged=member.model)
    else:
        final_dir = member.save(result.final_dir)
    return {"dir": final_dir, "steps": result.steps, "dev_before": dev_before, "dev": member.info.extra["dev"],
            "best_eval": result.best_eval, "metrics": logger.path, "member": member, "cache": s.cache}


def finish_member(s: MemberSetup, data: Datasets, result: Any, device: str):
    """Merge LoRA, measure normalisation on the reference set and the final dev metrics."""
    from rlhfkit.models.lora import merged_copy
    from rlhfkit.models.reward import RewardInfo, RewardModel

    model = merged_copy(s.model)  # the plain HF sequence classifier (LoRA merged)
    pad_id = s.tokenizer.pad_token_id
    ref_groups, ref_label = reference_groups(s.cfg, data, s.tokenizer)
    normalization, calibration = measure_normalization(model, ref_groups, ref_label, s.cfg, pad_id, device,
                                                       s.cache)
    dev_after = evaluate(model, data.dev, s.cfg, pad_id, device, s.cache) if data.dev else None
    kinds = {g.kind for g in data.train}
    info = RewardInfo(max_length=s.cfg.max_length, normalization=normalization, calibration=calibration,
                      extra={"objective": describe_objective(s.cfg, kinds), "seed": s.cfg.train.seed,
                             "steps": result.steps, "dev": dev_after, "best_eval": result.best_eval,
                             "frozen_layers": s.n_frozen})
    return RewardModel(model, s.tokenizer, info)


def describe_objective(cfg: RewardConfig, kinds: set) -> str:
    parts = []
    if "pair" in kinds:
        parts.append(cfg.objective.pairwise)
    if "listwise" in kinds and cfg.objective.pairwise != "listwise":
        parts.append("listwise")
    if "ranking" in kinds:
        parts.append("plackett_luce")
    parts += [k for k in ("score", "language") if k in kinds]
    return "+".join(dict.fromkeys(parts))


def run(cfg: RewardConfig) -> RewardResult:
    import time

    start = time.time()
    out = prepare_output(cfg, cfg.train.output_dir)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.device)
    from rlhfkit.models.loading import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(member_start(cfg.model, 0)))
    data = load_datasets(cfg, tokenizer, device)
    if not data.train:
        raise ConfigError(f"data.train: {cfg.data.train}: no usable training records")
    if data.judged:
        save_judged(out / "judge_scores.jsonl", data.judged)
    if cfg.ensemble.members == 1:
        member = train_member(cfg, data, 0, out, device)
        members = [member]
        final_dir, disagreement, ens_dev = member["dir"], None, member["dev"]
    else:
        from rlhfkit.distributed.group import refuse

        refuse("ensemble.members > 1")  # rank 0 alone finishes a member; the others would stop
        # members share the frozen-layer cache (same frozen weights), unless each continues its own
        # member of an earlier ensemble (whose lower layers may differ)
        share = member_start(cfg.model, 0) == cfg.model
        members, cache = [], None
        for i in range(cfg.ensemble.members):
            members.append(train_member(cfg, data, i, out / f"member-{i}", device, cache))
            cache = members[-1]["cache"] if share else None
        final_dir, disagreement, ens_dev = save_ensemble(cfg, data, members, out / "final", device, cache)
    first = members[0]
    return RewardResult(
        model_dir=final_dir, steps=sum(m["steps"] for m in members),
        members=[{k: v for k, v in m.items() if k not in ("member", "cache")} for m in members],
        dev_before=first["dev_before"], dev_after=ens_dev, disagreement=disagreement,
        normalization=first["member"].normalization, metrics_files=[m["metrics"] for m in members],
        seconds=time.time() - start)


def save_judged(path: Path, judged: list) -> None:
    from rlhfkit.data.records import record_to_json
    from rlhfkit.utils.io import atomic_write_jsonl

    atomic_write_jsonl(path, [{**record_to_json(r), "judge_score": round(float(s), 4)} for r, s in judged])


def save_ensemble(cfg: RewardConfig, data: Datasets, members: list, folder: Path, device: str,
                  cache: FrozenCache | None = None):
    """Write the ensemble folder; returns (folder, dev disagreement, ensemble dev metrics)."""
    from rlhfkit.models.reward import RewardEnsemble, reward_summary

    models = [m["member"] for m in members]
    ref_groups, _ = reference_groups(cfg, data, models[0].tokenizer)
    calibration = None
    if ref_groups:
        calibration = reward_summary(member_rewards(models, ref_groups, cfg, device, cache=cache).mean(dim=0).tolist())
    disagreement, ens_dev = None, None
    if data.dev:
        normed = member_rewards(models, data.dev, cfg, device, cache=cache)  # [M, R]
        disagreement = float(normed.std(dim=0, unbiased=False).mean())
        ens_dev = group_metrics(data.dev, regroup(normed.mean(dim=0).tolist(), data.dev), cfg.objective)
    ensemble = RewardEnsemble(models, calibration, extra={"members": len(models), "dev": ens_dev,
                                                          "dev_disagreement": disagreement})
    return ensemble.save(folder), disagreement, ens_dev


# --------------------------------------------------------------------------------------------------
# report


def format_metrics(m: dict) -> str:
    keys = [("accuracy", "accuracy {:.3f}"), ("tie_rate", "ties {:.3f}"), ("pair_loss", "pair loss {:.4f}"),
            ("loss", "loss {:.4f}"), ("margin_mean", "margin {:.3f}"), ("ece", "ECE {:.3f}"),
            ("score/loss", "score MSE {:.4f}"), ("language/loss", "language MSE {:.4f}")]
    return ", ".join(fmt.format(m[k]) for k, fmt in keys if k in m and m[k] is not None
                     and not (isinstance(m[k], float) and math.isnan(m[k])))


def report(result: RewardResult) -> None:
    """Print what a person wants to see at the end of reward-model training."""
    print(f"reward model finished: {result.steps} optimizer steps in {result.seconds / 60:.1f} min; "
          f"saved to {result.model_dir}")
    if result.dev_before:
        print(f"dev before: {format_metrics(result.dev_before)}")
    for i, m in enumerate(result.members):
        tag = f"member {i}" if len(result.members) > 1 else "dev after"
        best = m.get("best_eval") or {}
        best_text = f" (best eval at step {best['step']})" if "step" in best else ""
        if m.get("dev"):
            print(f"{tag}: {format_metrics(m['dev'])}{best_text}")
    if len(result.members) > 1 and result.dev_after:
        print(f"ensemble (mean of normalised members): {format_metrics(result.dev_after)}")
        if result.disagreement is not None:
            print(f"member disagreement on dev (mean std of normalised rewards): {result.disagreement:.3f}")
    if result.normalization:
        n = result.normalization
        print(f"normalisation: mean {n['mean']:.4f}, std {n['std']:.4f} on {n['reference']}")
    for path in result.metrics_files:
        print(f"metrics: {path}")
    if result.members and not result.dev_after:
        warn("no dev data: accuracy on held-out pairs is the over-fitting check; set data.dev or dev_fraction")

