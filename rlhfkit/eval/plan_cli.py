"""``rlhfkit plan STAGE [--config x.yaml] [key=value ...]``: FLOPs, memory and time of a stage's unit of
work before running it, from the stage's own config (rlhfkit/eval/plan.py) and the models' config.json.

    rlhfkit plan ppo model=default reward=runs/rm/final --device h100
    rlhfkit plan pipeline --json          # SFT + RM + PPO, and the multiplier over SFT
"""

from __future__ import annotations

import argparse
import importlib
import math
from dataclasses import dataclass
from typing import Any

from rlhfkit.config import ConfigError

PLANNED = ("sft", "rm", "dpo", "ppo", "grpo", "rloo", "bon", "pipeline")  # configs from rlhfkit.cli.COMMANDS
RULE_REWARDS = ("contains:", "regex:", "length", "python:")


def register(sub: argparse._SubParsersAction) -> None:
    from rlhfkit.eval.cost import GPU_PEAKS

    p = sub.add_parser("plan", help="compute cost of a stage: FLOPs by phase, memory per role, time on a device",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=list(PLANNED), help="the stage to plan (its config keys apply)")
    p.add_argument("--config", "-c", help="the stage's YAML config file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="the stage's dotted overrides")
    p.add_argument("--device", default="cpu", choices=["cpu", *GPU_PEAKS],
                   help="cpu: this machine's fp32 matmul peak, measured now (~1 s); a GPU: its stated bf16 peak")
    p.add_argument("--peak-gflops", type=float,
                   help="use this peak (GFLOP/s) instead of measuring or the table, e.g. to replay a benchmark")
    p.add_argument("--utilisation", type=float, default=0.5,
                   help="share of the peak the work reaches (0.5: rlhfkit's training steps here reach 0.4-0.7)")
    p.add_argument("--prompt-tokens", type=float, help="mean prompt tokens (default: from the config's caps)")
    p.add_argument("--response-tokens", type=float, help="mean response tokens (default: from the config's caps)")
    p.add_argument("--examples", type=int, help="training records, or prompts for bon (default: counted in the data)")
    p.add_argument("--no-data", action="store_true",
                   help="do not read the stage's data: lengths from the flags or the config's caps, run length unknown")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=plan_command)


def load_stage_config(stage: str, path: str | None, overrides: list[str]) -> Any:
    from rlhfkit.cli import config_stage
    from rlhfkit.config import load_config

    entry = config_stage(stage)
    return load_config(getattr(importlib.import_module(entry.module), entry.config), path, overrides)


def plan_command(args: argparse.Namespace) -> int:
    import json

    from rlhfkit.eval.cost import GPU_PEAKS, matmul_peak_gflops
    from rlhfkit.train.report import GiB, available_memory

    if not 0 < args.utilisation <= 1:
        raise ConfigError(f"--utilisation must be in (0, 1], got {args.utilisation}")
    if args.peak_gflops is not None and args.peak_gflops <= 0:
        raise ConfigError(f"--peak-gflops must be > 0, got {args.peak_gflops}")
    cfg = load_stage_config(args.stage, args.config, args.overrides)
    plans = build_plans(args.stage, cfg, args)
    gpu = args.device != "cpu"
    if args.peak_gflops:
        peak = args.peak_gflops * 1e9
    else:
        peak = GPU_PEAKS[args.device][0] * 1e12 if gpu else matmul_peak_gflops() * 1e9
    memory = GPU_PEAKS[args.device][1] if gpu else round(available_memory("cpu") / GiB, 1)
    report = summarise(plans, peak, args.utilisation, args.device, memory)
    print(json.dumps(report, indent=2) if args.json else "\n".join(render(report)))
    return 0


def build_plans(stage: str, cfg: Any, args: argparse.Namespace) -> list:
    if stage != "pipeline":
        return [plan_stage(stage, cfg, args)]
    cfg.sft.model = cfg.rm.model = cfg.ppo.model = cfg.dpo.model = cfg.model
    cfg.ppo.reward = cfg.model  # the reward model is trained from the SFT model: the same shape
    after = [("rm", cfg.rm), ("ppo", cfg.ppo)] if cfg.method == "ppo" else [("dpo", cfg.dpo)]
    return [plan_stage(name, sub, args) for name, sub in [("sft", cfg.sft)] + (after if cfg.method != "sft" else [])]


MEASURE_AT_MOST = 2000  # records tokenized to measure mean lengths (a few seconds)


@dataclass
class DataStats:
    """What the stage's data holds: training records (dev share held out) and mean token lengths
    as training sees them (chat template, truncation); None where unknown."""

    examples: int | None = None
    prompt: float | None = None
    response: float | None = None


def data_stats(stage: str, cfg: Any, measure: bool) -> DataStats:
    """Read the stage's data: count its records, and (``measure``) tokenize up to
    MEASURE_AT_MOST of them for the mean prompt and response lengths (RL: prompts only)."""
    from rlhfkit.data.sources import load

    if stage in ("ppo", "grpo", "rloo", "bon"):
        spec, limit = (cfg.prompts, cfg.max_prompts) if stage == "bon" else (cfg.data.prompts, cfg.data.max_prompts)
        records = load(spec, "prompts", limit=limit or None).records
        if not measure:
            return DataStats(len(records))
        from rlhfkit.data.tokenize import encode_prompt

        tok = _tokenizer(cfg.model)
        cap = cfg.data.max_prompt_length if stage != "bon" else None
        lens = [n for n in (len(encode_prompt(tok, c)) for c in records[:MEASURE_AT_MOST]) if cap is None or n <= cap]
        return DataStats(len(records), sum(lens) / len(lens) if lens else None)
    kind, limit = ("sft", cfg.data.max_examples) if stage == "sft" else \
        ("pairs", cfg.data.max_pairs if stage == "dpo" else cfg.data.max_examples)
    records = load(cfg.data.train, kind, limit=limit or None).records
    n = len(records) - (0 if cfg.data.dev or len(records) < 2 else max(1, round(cfg.data.dev_fraction * len(records))))
    if not measure or not records:
        return DataStats(n)
    from rlhfkit.data.tokenize import encode_example

    tok = _tokenizer(cfg.model)
    answers = [(r.prompt, a) for r in records[:MEASURE_AT_MOST]
               for a in ([r.response] if kind == "sft" else [r.chosen, r.rejected])]
    enc = [encode_example(tok, prompt, answer, cfg.max_length) for prompt, answer in answers]
    return DataStats(n, sum(len(e.prompt_ids) for e in enc) / len(enc), sum(len(e.response_ids) for e in enc) / len(enc))


def _tokenizer(name: str) -> Any:
    from rlhfkit.models.loading import load_tokenizer

    return load_tokenizer(name)


def lengths_for(stage: str, cfg: Any, args: argparse.Namespace, stats: DataStats):
    """Mean lengths: the flags, else measured in the data, else the config's caps (the worst case);
    and a line saying which."""
    from rlhfkit.eval.plan import Lengths

    if stage in ("ppo", "grpo", "rloo"):
        caps = (cfg.data.max_prompt_length, cfg.rollout.max_new_tokens)
    elif stage == "bon":
        caps = (128, cfg.sampling.max_new_tokens)
    else:
        caps = (cfg.max_length / 2, cfg.max_length / 2)
    sources = []
    values = []
    for flag, measured, cap, what in ((args.prompt_tokens, stats.prompt, caps[0], "prompt"),
                                      (args.response_tokens, stats.response, caps[1], "response")):
        value, source = ((flag, "given") if flag is not None else (measured, "measured in the data")
                         if measured is not None else (cap, "the config's cap: worst case"))
        values.append(round(value, 1))
        sources.append(f"{what} {value:.1f} ({source})")
    note = "mean tokens per sequence: " + ", ".join(sources)
    if stage in ("ppo", "grpo", "rloo", "bon") and args.response_tokens is None:
        note += "; sampled responses stop at EOS, often well before the cap: set --response-tokens"
    return Lengths(*values), note


def plan_stage(stage: str, cfg: Any, args: argparse.Namespace):
    from rlhfkit.eval import plan as P

    known = args.examples is not None or (hasattr(cfg, "train") and cfg.train.max_steps > 0)
    need_lengths = args.prompt_tokens is None or args.response_tokens is None
    stats = DataStats(args.examples) if (known and not need_lengths) or args.no_data else \
        data_stats(stage, cfg, measure=need_lengths)
    if args.examples is not None:
        stats.examples = args.examples
    lengths, note = lengths_for(stage, cfg, args, stats)
    policy = model_shape(cfg.model, "causal", cfg.lora if hasattr(cfg, "lora") else None)
    if stage == "sft":
        plan = P.plan_sft(cfg, policy, lengths, stats.examples)
    elif stage == "rm":
        plan = P.plan_rm(cfg, model_shape(cfg.model, "scalar", cfg.lora), lengths, stats.examples)
    elif stage == "dpo":
        plan = P.plan_dpo(cfg, policy, lengths, stats.examples)
    elif stage == "bon":
        plan = P.plan_bon(cfg, policy, reward_shape(cfg.reward, cfg.model, None), lengths, stats.examples)
    else:
        reward = reward_shape(cfg.reward, cfg.model, None)
        value = None
        if stage == "ppo" and cfg.value_model != "head":
            source = cfg.reward if cfg.value_model == "reward" and reward is not None else cfg.model
            value = model_shape(source, "scalar", cfg.lora)
        plan = P.plan_rl(cfg, stage, policy, reward, value, lengths)
    plan.assumptions.insert(0, note)
    plan.memory = role_memory(stage, cfg, lengths, args.device)
    return plan, policy


def reward_shape(reward: str, policy_model: str, lora: Any):
    """The reward model's shape; None for a rule/function reward; the policy's shape when empty."""
    if reward.startswith(RULE_REWARDS) or ".py:" in reward:
        return None
    return model_shape(reward or policy_model, "scalar", lora)


_SHAPES: dict = {}


def meta_model(name: str, kind: str, lora: Any = None, dtype: str = "float32"):
    """The model built on the meta device (no weights read, no memory): its parameter counts are
    exact. ``kind``: causal (LM head) or scalar (a reward/value model: 1-label classifier)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhfkit.models.loading import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(name))
    if kind == "scalar":
        config.num_labels = 1
    cls = AutoModelForSequenceClassification if kind == "scalar" else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config).to(getattr(torch, dtype))
    if lora is not None and lora.enabled:
        import warnings

        from rlhfkit.models.lora import apply_lora

        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.simplefilter("ignore", FutureWarning)
            model = apply_lora(model, lora, "SEQ_CLS" if kind == "scalar" else "CAUSAL_LM")
    return model


def model_shape(name: str, kind: str, lora: Any = None):
    from rlhfkit.eval.cost import ModelShape

    key = (name, kind, None if lora is None or not lora.enabled else (lora.r, tuple(lora.target_modules)))
    if key not in _SHAPES:
        model = meta_model(name, kind, lora)
        cfg = model.config
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        skip = {id(base.get_input_embeddings().weight)}
        heads = [getattr(base, "lm_head", None), getattr(base, "score", None)]
        skip |= {id(p) for h in heads if h is not None for p in h.parameters()}
        lora_n = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        body = sum(p.numel() for n, p in model.named_parameters() if id(p) not in skip and "lora_" not in n)
        heads_n = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads_n
        _SHAPES[key] = ModelShape(str(name), cfg.num_hidden_layers, heads_n * head_dim, body,
                                  cfg.vocab_size * cfg.hidden_size, lora_n)
    return _SHAPES[key]


def role_memory(stage: str, cfg: Any, lengths: Any, device: str) -> dict:
    """GiB per role for one micro-batch, through estimate_training_memory (rlhfkit/train/report.py):
    trained roles with their gradients and AdamW moments; frozen roles with their weights and a
    forward's working set (estimated as checkpointed activations). Returns {role: GiB}."""
    from rlhfkit.train.report import GiB, estimate_training_memory

    dtype = "float32" if device == "cpu" or cfg_dtype(cfg) == "float32" else "bfloat16"
    micro = cfg.train.micro_batch_size if hasattr(cfg, "train") else cfg.sampling.batch_size
    p, r = int(lengths.prompt), int(lengths.response)
    lora = getattr(cfg, "lora", None)

    def est(name: str, kind: str, train: bool, rows: int, seq: int, logits: int) -> float:
        model = meta_model(name, kind, lora if train else None, dtype)
        if not train:
            model.requires_grad_(False)
        elif stage == "rm" and not (lora and lora.enabled):
            freeze_bottom(model, cfg.freeze_layers)
        e = estimate_training_memory(model, rows, seq, checkpointing=not train, logit_positions=logits)
        return round((e.weights + e.grads + e.optimizer + e.activations) / GiB, 2)

    if stage == "sft":
        return {"policy": est(cfg.model, "causal", True, micro, p + r, micro * r)}
    if stage == "rm":
        return {"reward": est(cfg.model, "scalar", True, micro, p + 2 * r, 0)}
    if stage == "dpo":
        return {"policy": est(cfg.model, "causal", True, micro, p + 2 * r, micro * 2 * r)}
    if stage == "bon":
        out = {"policy": est(cfg.model, "causal", False, micro, p + r, micro)}
        return out
    out = {"policy": est(cfg.model, "causal", True, micro, p + r, micro * r)}
    if not (lora and lora.enabled) and (stage == "ppo" or cfg.kl.coef > 0):
        out["reference"] = est(cfg.model, "causal", False, micro, p + r, micro * r)
    reward = reward_shape(cfg.reward, cfg.model, None)
    if reward is not None:
        out["reward"] = est(cfg.reward or cfg.model, "scalar", False, micro, p + r, 0)
    if stage == "ppo" and cfg.value_model != "head":
        out["value"] = est(cfg.model, "scalar", True, micro, p + r, 0)
    return out


def cfg_dtype(cfg: Any) -> str:
    return getattr(cfg, "dtype", "float32")


def freeze_bottom(model: Any, freeze_layers: int) -> None:
    """The RM stage's freeze_layers on a (meta) model: embeddings and the lowest layers frozen."""
    from rlhfkit.eval.plan import rm_trainable_layers

    layers = model.base_model.layers
    frozen = len(layers) - rm_trainable_layers(freeze_layers, len(layers))
    if frozen:
        model.get_input_embeddings().requires_grad_(False)
        for layer in layers[:frozen]:
            layer.requires_grad_(False)


def summarise(plans: list, peak: float, utilisation: float, device: str, device_memory: float | None) -> dict:
    from rlhfkit.eval.cost import seconds

    out = {"device": device, "peak_flops": peak, "utilisation": utilisation, "device_memory_gib": device_memory,
           "plans": []}
    for plan, policy in plans:
        item = plan.to_json()
        item["model"] = {"name": policy.name, "layers": policy.layers, "body_params": policy.body,
                         "lm_head_params": policy.head, "lora_params": policy.lora}
        item["seconds_per_unit"] = seconds(plan.flops, peak, utilisation)
        item["total_seconds"] = None if plan.units is None else item["seconds_per_unit"] * plan.units
        out["plans"].append(item)
    totals = [p["total_flops"] for p in out["plans"]]
    if len(totals) > 1 and all(t is not None for t in totals) and totals[0]:
        out["multiplier_over_sft"] = sum(totals) / totals[0]
    return out


def _fmt_time(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "?"
    if s < 0.1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def render(report: dict) -> list[str]:
    peak = report["peak_flops"]
    lines = [f"device {report['device']}: peak {peak / 1e9:,.0f} GFLOP/s x utilisation {report['utilisation']:g}"]
    for item in report["plans"]:
        m = item["model"]
        lines += ["", f"{item['stage']}: {m['name']} ({m['layers']} layers, {m['body_params'] / 1e6:.1f}M body + "
                      f"{m['lm_head_params'] / 1e6:.1f}M LM-head params" +
                  (f", {m['lora_params'] / 1e6:.2f}M LoRA" if m["lora_params"] else "") + f"), per {item['unit']}",
                  f"  {'phase':38}{'role':11}{'GFLOP':>10}{'share':>7}{'time':>10}"]
        total = item["flops_per_unit"]
        for ph in item["phases"]:
            t = ph["flops"] / (peak * report["utilisation"])
            lines.append(f"  {ph['name']:38}{ph['role']:11}{ph['flops'] / 1e9:>10,.1f}{ph['flops'] / total:>7.0%}"
                         f"{_fmt_time(t):>10}" + (f"  ({ph['note']})" if ph["note"] else ""))
        lines.append(f"  {'total':49}{total / 1e9:>10,.1f}{1:>7.0%}{_fmt_time(item['seconds_per_unit']):>10}")
        if item["units"] is not None:
            lines.append(f"  run: {item['units']} x {item['unit']} = {item['total_flops'] / 1e12:,.2f} TFLOP, "
                         f"{_fmt_time(item['total_seconds'])}")
        mem = item["memory"]
        cap = report["device_memory_gib"]
        lines.append("  memory (GiB, one micro-batch): " + ", ".join(f"{k} {v:.2f}" for k, v in mem.items()) +
                     f"; total {sum(mem.values()):.2f}" +
                     (f" of {cap:g} {'available' if report['device'] == 'cpu' else 'on the device'}" if cap else "") +
                     (" - likely out of memory" if cap and sum(mem.values()) > 0.9 * cap else ""))
        lines += [f"  {a}" for a in item["assumptions"]]
    if "multiplier_over_sft" in report:
        lines += ["", f"full run over SFT alone: {report['multiplier_over_sft']:.1f}x the FLOPs"]
    return lines
