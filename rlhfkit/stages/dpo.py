"""Direct preference optimisation and its close variants (SPEC section 6).

DPO (Rafailov et al. 2023) trains the policy on preference pairs with the Bradley-Terry link applied
to the implicit reward r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)); no reward model, no sampling.
The variant is a config word (``loss``: sigmoid/dpo, cdpo, ipo, simpo, orpo), looked up in
:data:`rlhfkit.losses.dpo.DPO_LOSSES`.

Work this stage avoids (it is most of what a plain implementation spends):

* The prompt is shared by the two responses, so each pair is ONE packed row
  ``prompt | chosen | rejected`` with a 4D attention mask: chosen tokens see the prompt and earlier
  chosen tokens, rejected tokens see the prompt and earlier rejected tokens (never chosen), and
  position ids restart after the prompt, so each response computes exactly what a separate
  ``prompt + response`` forward pass would, but the prompt runs once (gradients flow through it).
* The LM head runs only at positions that predict a response token (the last prompt position is
  used twice: it predicts the first chosen and the first rejected token).
* The reference model is frozen, so its log-probs are computed once before training and cached in
  ``output_dir/reference_logps.pt``; a resumed run reads them back. Reference-free variants (simpo,
  orpo) skip the reference entirely. With LoRA the reference is the base with the adapter switched
  off, so there is never a second copy of the weights.
* Pairs are bucketed by length, so a micro-batch carries little padding.

Recipe: setup -> data -> reference pass -> train -> dev evaluation -> report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from rlhfkit.config import opt
from rlhfkit.run import say, say_trainable, truncation_report, warn
from rlhfkit.stages.common import start_lm_stage
from rlhfkit.train.config import LoraConfig, OptimConfig, SampleConfig, TrainConfig

LossName = Literal["sigmoid", "dpo", "cdpo", "ipo", "simpo", "orpo"]


@dataclass
class DPOData:
    train: str = opt("demo:pairs", "preference pairs (JSONL/JSONL.gz/JSON/Parquet/HF folder, HH transcripts "
                                   "parse automatically) or demo:pairs; rankings with format=rankings")
    format: Literal["pairs", "rankings"] = opt(
        "pairs", "pairs, or rankings (each ranking expands into all k(k-1)/2 ordered pairs)")
    dev: str = opt("", "dev file; empty = hold out dev_fraction of the training pairs")
    dev_fraction: float = opt(0.1, "share of train held out for the dev evaluation when dev is empty")
    max_pairs: int = opt(0, "use at most this many training pairs (0 = all)")
    max_dev_pairs: int = opt(0, "evaluate on at most this many dev pairs (0 = all)")


@dataclass
class DPOConfig:
    model: str = opt("default", "policy to start from (and the reference): default, tiny, a HF folder "
                                "(usually the SFT model) or hub name")
    reference: str = opt("", "reference model (empty = the starting weights of model; with LoRA the base "
                             "with the adapter off): a HF folder whose log-probs are computed once")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    max_length: int = opt(512, "prompt+response tokens per response; longer ones are cut and counted")
    loss: LossName = opt("sigmoid", "DPO variant: sigmoid (= dpo), cdpo (label-smoothed), ipo, "
                                    "simpo, orpo (the last two need no reference model)")
    beta: float = opt(0.1, "temperature of the implicit reward beta*log(pi/pi_ref) (SimPO uses ~2)")
    label_smoothing: float = opt(0.0, "cdpo: assumed probability that a label is flipped")
    simpo_gamma: float = opt(0.5, "simpo: target reward margin")
    orpo_lambda: float = opt(0.1, "orpo: weight of the odds-ratio term next to the SFT loss")
    reference_batch_size: int = opt(16, "pairs per forward pass when precomputing reference log-probs")
    soft_labels: bool = opt(False, "loss=sigmoid: train on each pair's label P(chosen better) (a judge's "
                                   "probability, a vote share) as a soft target; false = every label counts as 1")
    data: DPOData = opt(factory=DPOData, help="")
    lora: LoraConfig = opt(factory=LoraConfig, help="")
    # 4 x 2 = 8 pairs per step: a micro-batch of 8 long HH pairs (max_length 512) peaks near 10 GiB
    train: TrainConfig = opt(factory=lambda: TrainConfig(output_dir="runs/dpo", epochs=1,
                                                         micro_batch_size=4, grad_accum=2), help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=1e-6, warmup_ratio=0.1), help="")
    samples: SampleConfig = opt(factory=lambda: SampleConfig(prompts=2), help="")

    def validate(self) -> None:
        if self.beta <= 0:
            raise ValueError("beta must be > 0")
        if self.loss == "cdpo" and not 0 < self.label_smoothing < 0.5:
            raise ValueError("loss=cdpo needs 0 < label_smoothing < 0.5")
        if self.loss != "cdpo" and self.label_smoothing:
            raise ValueError(f"label_smoothing is only read by loss=cdpo (loss is {self.loss})")
        if self.max_length < 8:
            raise ValueError("max_length must be >= 8")
        if self.reference_batch_size < 1:
            raise ValueError("reference_batch_size must be >= 1")
        if self.soft_labels and self.loss not in ("sigmoid", "dpo"):
            raise ValueError(f"soft_labels is read by loss=sigmoid only (loss is {self.loss})")

    @property
    def needs_reference(self) -> bool:
        from rlhfkit.losses.dpo import REFERENCE_FREE

        return self.loss not in REFERENCE_FREE


@dataclass
class DPOResult:
    model_dir: Path
    steps: int
    loss: str
    train_pairs: int
    dev_before: dict | None
    dev_after: dict | None
    reference_seconds: float  # 0 when the cache was reused or the variant has no reference
    reference_cached: bool
    train_seconds: float
    pairs_per_s: float | None
    samples: list = field(default_factory=list)
    metrics_file: Path | None = None


# ----------------------------------------------------------------------------------------------
# Data: preference pairs -> token ids


@dataclass
class EncodedPair:
    """One preference pair as token ids; both responses end with EOS unless truncated."""

    prompt_ids: list
    chosen_ids: list
    rejected_ids: list
    prompt_truncated: bool = False
    chosen_truncated: bool = False
    rejected_truncated: bool = False
    label: float = 1.0  # P(chosen better), >= 0.5 after orient()

    @property
    def truncated(self) -> bool:
        return self.prompt_truncated or self.chosen_truncated or self.rejected_truncated

    def __len__(self) -> int:
        """Length of the packed row ``prompt | chosen | rejected``."""
        return len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


def encode_pair(tokenizer: Any, pair: Any, max_length: int) -> EncodedPair:
    """Tokenize a PreferencePair; ``prompt + response`` fits ``max_length`` for each response.

    The prompt is cut the way :func:`rlhfkit.data.tokenize.fit` cuts it for the LONGER response, so
    both responses see the same prompt; each response is then cut to the room left."""
    from rlhfkit.data.tokenize import encode_prompt, encode_response, fit

    prompt = encode_prompt(tokenizer, pair.prompt)
    chosen, rejected = encode_response(tokenizer, pair.chosen), encode_response(tokenizer, pair.rejected)
    fitted = fit(prompt, chosen if len(chosen) >= len(rejected) else rejected, max_length)
    room = max_length - len(fitted.prompt_ids)
    return EncodedPair(fitted.prompt_ids, chosen[:room], rejected[:room], fitted.prompt_truncated,
                       len(chosen) > room, len(rejected) > room, label=float(pair.label))


def orient(pairs: list, soft: bool = False) -> tuple[list, dict]:
    """DPO needs a preferred side: ties (label 0.5) are dropped, pairs with label < 0.5 are swapped,
    soft labels are used as hard ones (unless ``soft``: then they stay the pair's target). Returns
    (pairs, counts of what was done)."""
    from dataclasses import replace

    out, counts = [], {"tie": 0, "swapped": 0, "soft label used as hard": 0, "soft label kept": 0}
    for pair in pairs:
        if pair.label == 0.5:
            counts["tie"] += 1
            continue
        if pair.label < 0.5:
            pair = replace(pair, chosen=pair.rejected, rejected=pair.chosen, label=1.0 - pair.label)
            counts["swapped"] += 1
        if pair.label != 1.0:
            counts["soft label kept" if soft else "soft label used as hard"] += 1
        out.append(pair)
    return out, {k: v for k, v in counts.items() if v}


def read_pairs(spec: str, fmt: str, limit: int | None = None, soft: bool = False) -> list:
    from rlhfkit.data.records import ranking_to_pairs
    from rlhfkit.data.sources import load

    if fmt == "rankings":
        result = load(spec, "rankings", limit=limit)
        say(result.report())
        pairs = [p for ranking in result.records for p in ranking_to_pairs(ranking)]
        say(f"{len(result.records)} rankings -> {len(pairs)} ordered pairs")
        pairs = pairs[:limit] if limit else pairs
    else:
        result = load(spec, "pairs", limit=limit)
        say(result.report())
        pairs = result.records
    pairs, counts = orient(pairs, soft)
    if counts:
        say(f"{spec}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + " (ties carry no DPO signal)")
    return pairs


def encode_pairs(tokenizer: Any, pairs: list, max_length: int, what: str) -> list[EncodedPair]:
    encoded = [encode_pair(tokenizer, p, max_length) for p in pairs]
    truncation_report(f"{what} pairs", sum(e.truncated for e in encoded), len(encoded), max_length)
    kept = [e for e in encoded if e.chosen_ids != e.rejected_ids]
    if len(kept) < len(encoded):
        warn(f"{len(encoded) - len(kept)} {what} pairs dropped: chosen and rejected are identical "
             f"after truncation at max_length={max_length}")
    return kept


def load_pairs(cfg: DPOConfig, tokenizer: Any) -> tuple[list, list, list]:
    """Read, split and tokenize; returns (train EncodedPairs, dev EncodedPairs, dev records)."""
    from rlhfkit.data.sources import split_dev

    records = read_pairs(cfg.data.train, cfg.data.format, cfg.data.max_pairs or None, cfg.soft_labels)
    if cfg.data.dev:
        train_records, dev_records = records, read_pairs(cfg.data.dev, cfg.data.format, soft=cfg.soft_labels)
    else:
        train_records, dev_records = split_dev(records, cfg.data.dev_fraction, cfg.train.seed)
    if cfg.data.max_dev_pairs:
        dev_records = dev_records[:cfg.data.max_dev_pairs]
    train = encode_pairs(tokenizer, train_records, cfg.max_length, "training")
    dev = encode_pairs(tokenizer, dev_records, cfg.max_length, "dev")
    if cfg.data.dev and not dev:
        warn(f"data.dev: {cfg.data.dev}: no usable dev pairs: training runs without a dev evaluation")
    return train, dev, dev_records


# ----------------------------------------------------------------------------------------------
# Batching: one packed row per pair


def collate_pairs(pairs: Sequence[EncodedPair], pad_id: int, index: Sequence[int] | None = None) -> dict:
    """Pack each pair into one row ``prompt | chosen | rejected`` (right-padded to the widest row).

    Returns:
      input_ids, position_ids ``[B, W]`` long: positions restart at len(prompt) for rejected.
      allowed ``[B, 1, W, W]`` bool: query i may attend key j (causal within prompt+chosen; rejected
        sees the prompt and itself, not chosen; padding sees only itself).
      hidden_index ``[N]`` long: flat positions (row * W + col) whose hidden state predicts a
        response token; targets ``[N]`` that token; segment ``[N]`` 2*b (chosen of pair b) or 2*b+1.
      chosen_lengths, rejected_lengths ``[B]``; index ``[B]`` the pairs' positions in the data set.
    """
    import torch

    from rlhfkit.data.collate import shared_prefix_rows

    rows = shared_prefix_rows([(p.prompt_ids, [p.chosen_ids, p.rejected_ids]) for p in pairs], pad_id)
    b, width = rows.input_ids.shape  # [B, W]
    hidden_index, targets, segment = [], [], []
    for row, pair in enumerate(pairs):
        n_p, n_c, n_r = len(pair.prompt_ids), len(pair.chosen_ids), len(pair.rejected_ids)
        base, rejected_at = row * width, rows.starts[row][1]
        # chosen token k (at column n_p + k) is predicted by column n_p + k - 1
        hidden_index += [base + n_p - 1 + k for k in range(n_c)]
        # rejected token 0 is predicted by the last prompt column, token k > 0 by the column before it
        hidden_index += [base + n_p - 1] + [base + rejected_at + k - 1 for k in range(1, n_r)]
        targets += pair.chosen_ids + pair.rejected_ids
        segment += [2 * row] * n_c + [2 * row + 1] * n_r
    return {
        "input_ids": rows.input_ids,
        "position_ids": rows.position_ids,
        "allowed": rows.allowed,
        "hidden_index": torch.tensor(hidden_index, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "segment": torch.tensor(segment, dtype=torch.long),
        "chosen_lengths": torch.tensor([len(p.chosen_ids) for p in pairs], dtype=torch.long),
        "rejected_lengths": torch.tensor([len(p.rejected_ids) for p in pairs], dtype=torch.long),
        "index": torch.tensor(list(index) if index is not None else range(b), dtype=torch.long),
        "labels": torch.tensor([p.label for p in pairs], dtype=torch.float32),
        "tokens": sum(len(p) for p in pairs),
    }


class PairBatches(Sequence):
    """Micro-batches of one epoch, collated lazily (a batch's 4D mask is B*W*W bools, too many to
    keep for a whole epoch). The order is a pure function of (seed, epoch)."""

    def __init__(self, pairs: list[EncodedPair], batch_size: int, pad_id: int, seed: int, epoch: int,
                 shuffle: bool = True):
        from rlhfkit.data.collate import bucketed_batches

        self.pairs, self.pad_id = pairs, pad_id
        self.order = bucketed_batches([len(p) for p in pairs], batch_size, seed, epoch, shuffle)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        idx = self.order[i]
        return collate_pairs([self.pairs[j] for j in idx], self.pad_id, idx)


# ----------------------------------------------------------------------------------------------
# Forward: per-sequence log-probs of chosen and rejected in one pass


def pair_logps(model: Any, batch: dict, device: str = "cpu"):
    """Summed response log-probs ``(chosen [B], rejected [B])`` from one packed forward pass.

    The decoder runs once over ``prompt | chosen | rejected``; the LM head runs only at the
    ``hidden_index`` positions ([N, H] -> [N, V]); token log-probs are summed per response."""
    import torch

    from rlhfkit.data.collate import additive_mask
    from rlhfkit.losses.utils import logprobs_from_logits
    from rlhfkit.models.forward import decoder_hidden, unwrap

    dtype = next(model.parameters()).dtype
    ids = batch["input_ids"].to(device)
    mask = additive_mask(batch["allowed"].to(device), dtype)
    hidden = decoder_hidden(model, ids, mask, batch["position_ids"].to(device))  # [B, W, H]
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["hidden_index"].to(device))  # [N, H]
    logits = unwrap(model).get_output_embeddings()(picked)  # [N, V]
    token_logps = logprobs_from_logits(logits.float(), batch["targets"].to(device))  # [N]
    b = ids.shape[0]
    sums = torch.zeros(2 * b, dtype=token_logps.dtype, device=device).index_add(
        0, batch["segment"].to(device), token_logps)  # [2B]: chosen, rejected interleaved
    return sums[0::2], sums[1::2]


def reference_logps(model: Any, pairs: list[EncodedPair], pad_id: int, batch_size: int,
                    device: str = "cpu", desc: str = "reference", progress: bool = False) -> Any:
    """Reference log-probs ``[n, 2]`` (chosen, rejected sums) of every pair, in data order.

    Runs without gradients and, for a LoRA model, with the adapter off (the base is the reference)."""
    from rlhfkit.train.ref_cache import compute_reference_logps

    batches = PairBatches(pairs, batch_size, pad_id, seed=0, epoch=0, shuffle=False) if pairs else []
    return compute_reference_logps(model, batches, lambda m, batch: pair_logps(m, batch, device),
                                   len(pairs), columns=2, desc=desc if progress else None, unit="pair")


# ----------------------------------------------------------------------------------------------
# Loss and evaluation


def dpo_inputs(chosen, rejected, batch: dict, reference: Any | None, soft: bool = False):
    """The loss inputs of a batch; ``soft``: each pair's label as its target (``soft_labels``)."""
    from rlhfkit.losses.dpo import DPOInputs

    ref = None
    if reference is not None:
        ref = reference[batch["index"]].to(chosen.device, chosen.dtype)  # [B, 2]
    return DPOInputs(
        policy_chosen_logps=chosen, policy_rejected_logps=rejected,
        ref_chosen_logps=None if ref is None else ref[:, 0],
        ref_rejected_logps=None if ref is None else ref[:, 1],
        chosen_lengths=batch["chosen_lengths"].to(chosen.device),
        rejected_lengths=batch["rejected_lengths"].to(chosen.device),
        labels=batch["labels"].to(chosen.device, chosen.dtype) if soft else None,
    )


def loss_params(cfg: DPOConfig):
    from rlhfkit.losses.dpo import DPOParams

    return DPOParams(beta=cfg.beta, label_smoothing=cfg.label_smoothing, simpo_gamma=cfg.simpo_gamma,
                     orpo_lambda=cfg.orpo_lambda)


def dpo_step(model: Any, batch: dict, reference: Any | None, cfg: DPOConfig, device: str):
    """One micro-batch: packed forward, then the configured DPO-family loss."""
    from rlhfkit.losses.dpo import get_dpo_loss
    from rlhfkit.train.loop import StepOutput

    chosen, rejected = pair_logps(model, batch, device)
    loss, stats = get_dpo_loss(cfg.loss)(dpo_inputs(chosen, rejected, batch, reference, cfg.soft_labels),
                                         loss_params(cfg))
    stats = {k: v for k, v in stats.items() if k != "loss"}
    return StepOutput(loss=loss, stats=stats, tokens=batch["tokens"], examples=len(batch["index"]))


def per_pair_margins(inputs: Any, cfg: DPOConfig) -> list[float]:
    """Implicit-reward margin of each pair, as the configured variant defines its reward."""
    from rlhfkit.losses.dpo import DPOInputs, get_dpo_loss

    fn, params = get_dpo_loss(cfg.loss), loss_params(cfg)
    margins = []
    for i in range(inputs.policy_chosen_logps.shape[0]):
        one = DPOInputs(**{k: (None if v is None else v[i:i + 1]) for k, v in vars(inputs).items()})
        margins.append(float(fn(one, params)[1]["rewards/margin"]))
    return margins


TIE_TOLERANCE = 1e-4  # implicit-reward margins this close to 0 are float rounding, not a preference


def evaluate_pairs(model: Any, batches: PairBatches, reference: Any | None, cfg: DPOConfig,
                   device: str) -> dict:
    """Dev metrics over all pairs: loss (pair-weighted), implicit-reward ``accuracy`` (margin above
    :data:`TIE_TOLERANCE`), ``ties`` (|margin| within it, e.g. every pair before training: the
    reference pass and this one batch pairs differently, so "equal" log-probs differ by float
    rounding), mean ``margin``, and
    ``logp_accuracy``: the share of pairs whose chosen response has the higher per-token log-prob
    (meaningful before training too)."""
    import torch

    from rlhfkit.losses.dpo import get_dpo_loss

    was_training = model.training
    model.eval()
    n, loss_sum, margins, logp_wins = 0, 0.0, [], 0
    with torch.no_grad():
        for i in range(len(batches)):
            batch = batches[i]
            chosen, rejected = pair_logps(model, batch, device)
            inputs = dpo_inputs(chosen, rejected, batch, reference, cfg.soft_labels)
            b = chosen.shape[0]
            loss_sum += float(get_dpo_loss(cfg.loss)(inputs, loss_params(cfg))[0]) * b
            margins += per_pair_margins(inputs, cfg)
            avg_c = chosen / batch["chosen_lengths"].to(chosen)
            avg_r = rejected / batch["rejected_lengths"].to(rejected)
            logp_wins += int((avg_c > avg_r).sum())
            n += b
    model.train(was_training)
    return {"loss": loss_sum / max(1, n),
            "accuracy": sum(m > TIE_TOLERANCE for m in margins) / max(1, n),
            "ties": sum(abs(m) <= TIE_TOLERANCE for m in margins) / max(1, n),
            "margin": sum(margins) / max(1, n),
            "logp_accuracy": logp_wins / max(1, n),
            "pairs": n}


# ----------------------------------------------------------------------------------------------
# The run


def memory_report(model: Any, pairs: list[EncodedPair], micro_batch_size: int, device: str) -> None:
    """The shared estimate for the widest packed row, with the LM-head logits counted only where
    this stage computes them (response positions), not at every position."""
    from rlhfkit.train.report import estimate_training_memory

    widest = max(len(p) for p in pairs)
    est = estimate_training_memory(model, micro_batch_size, widest, device=device)
    vocab = getattr(model.config, "vocab_size", 0)
    responses = max(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    est.activations -= 3 * micro_batch_size * (widest - responses) * vocab * 4  # logits never built
    text = est.summary() + f" for the widest batch ({micro_batch_size} x {widest} packed tokens)"
    if est.too_big:
        warn(text + ": this will likely run out of memory; lower train.micro_batch_size or max_length, "
             "use LoRA, or raise train.grad_accum instead")
    else:
        say(text)


def fingerprint(cfg: DPOConfig, train: list[EncodedPair], dev: list[EncodedPair]) -> str:
    """The cache key of DPO's reference log-probs: the reference model, its dtype and every token id
    of the train and dev pairs (:func:`rlhfkit.train.ref_cache.fingerprint`)."""
    from rlhfkit.train.ref_cache import fingerprint as cache_key

    return cache_key(cfg.reference or cfg.model, cfg.dtype,
                     [[(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in part] for part in (train, dev)])


def prepare_reference(model: Any, cfg: DPOConfig, train: list, dev: list, pad_id: int, out: Path,
                      device: str) -> tuple[dict, bool, float]:
    """Reference log-probs for train and dev: (tensors, reused from the cache, seconds spent)."""
    from rlhfkit.train.ref_cache import load_or_compute

    def compute() -> dict:
        say(f"precomputing reference log-probs of {len(train)} training and {len(dev)} dev pairs "
            "(once; cached for resumed runs)")
        size, bar = cfg.reference_batch_size, cfg.train.progress
        ref = model
        if cfg.reference:  # a separate reference: loaded for this pass only
            from rlhfkit.models.loading import load_causal_lm

            ref, _ = load_causal_lm(cfg.reference, dtype=cfg.dtype, device=device)
        return {"train": reference_logps(ref, train, pad_id, size, device, "reference (train)", bar),
                "dev": reference_logps(ref, dev, pad_id, size, device, "reference (dev)", bar)}

    return load_or_compute(out, fingerprint(cfg, train, dev), compute)


def run(cfg: DPOConfig) -> DPOResult:
    from rlhfkit.monitor.metrics import MetricLogger
    from rlhfkit.models.lora import save_merged
    from rlhfkit.rollout import greedy_texts
    from rlhfkit.train.checkpoint import load_weights_into, save_hf_folder
    from rlhfkit.train.loop import EvalSpec, total_steps, train_loop
    from rlhfkit.train.report import describe_batches

    out, device, model, tokenizer, train, dev, dev_records = start_lm_stage(cfg, load_pairs, "preference pairs")
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = tokenizer.pad_token_id
    size = cfg.train.micro_batch_size
    steps = total_steps(cfg.train, len(PairBatches(train, size, pad_id, cfg.train.seed, 0)))
    say(f"loss: {cfg.loss} (beta={cfg.beta}); reference model: "
        + ((cfg.reference or "the starting weights") + ", log-probs precomputed once" if cfg.needs_reference
           else "none needed")
        + (" with the LoRA adapter off" if cfg.lora.enabled and cfg.needs_reference and not cfg.reference else ""))
    say(describe_batches(size, cfg.train.grad_accum, len(train), steps, unit="pairs"))
    say_trainable(model)
    memory_report(model, train, size, device)

    reference, reused, ref_seconds = {"train": None, "dev": None}, False, 0.0
    if cfg.needs_reference:
        reference, reused, ref_seconds = prepare_reference(model, cfg, train, dev, pad_id, out, device)
    dev_batches = PairBatches(dev, size, pad_id, cfg.train.seed, 0, shuffle=False) if dev else None
    sample_prompts = [r.prompt for r in dev_records[:cfg.samples.prompts]]
    before = greedy_texts(model, tokenizer, sample_prompts, cfg.samples.max_new_tokens)
    evaluate = (lambda: evaluate_pairs(model, dev_batches, reference["dev"], cfg, device)) if dev else None
    dev_before = evaluate() if evaluate else None
    if dev_before:
        from rlhfkit.utils.io import write_json

        write_json(out / "eval_before.json", dev_before)  # metrics.jsonl restarts with the loop
        say(f"dev before training ({dev_before['pairs']} pairs): loss {dev_before['loss']:.4f}, chosen has "
            f"the higher per-token log-prob in {dev_before['logp_accuracy']:.1%}")
    logger = MetricLogger.for_run(out, cfg.train, cfg)

    result = train_loop(
        model=model, params=params,
        micro_batches=lambda epoch: PairBatches(train, size, pad_id, cfg.train.seed, epoch),
        compute=lambda batch: dpo_step(model, batch, reference["train"], cfg, device),
        cfg=cfg.train, optim=cfg.optim,
        save_model=lambda folder: save_hf_folder(model, tokenizer, folder),
        load_model=lambda folder: load_weights_into(model, folder), logger=logger,
        evaluate=EvalSpec(evaluate) if evaluate else None, desc=f"dpo:{cfg.loss}",
        weight=lambda batch: len(batch["index"]),  # the loss is a mean over pairs
    )
    logger.close()
    final_dir = save_merged(model, tokenizer, result.final_dir) if cfg.lora.enabled else result.final_dir
    after = greedy_texts(model, tokenizer, sample_prompts, cfg.samples.max_new_tokens)
    return DPOResult(
        model_dir=final_dir, steps=result.steps, loss=cfg.loss, train_pairs=len(train),
        dev_before=dev_before, dev_after=result.eval_history[-1] if result.eval_history else None,
        reference_seconds=ref_seconds, reference_cached=reused, train_seconds=result.seconds,
        pairs_per_s=result.last_stats.get("examples_per_s"),
        samples=list(zip(sample_prompts, before, after)), metrics_file=logger.path)


def report(result: DPOResult) -> None:
    """Print what a person wants to see at the end of a DPO run."""
    from rlhfkit.run import print_sample

    print(f"DPO ({result.loss}) finished: {result.steps} optimizer steps on {result.train_pairs} pairs "
          f"in {result.train_seconds:.0f}s; model saved to {result.model_dir}")
    if result.reference_cached:
        print("reference log-probs: reused from the run folder")
    elif result.reference_seconds:
        print(f"reference log-probs: computed once in {result.reference_seconds:.1f}s")
    if result.pairs_per_s:
        print(f"throughput (last logging window): {result.pairs_per_s:.2f} pairs/s")
    if result.dev_before and result.dev_after:
        b, a = result.dev_before, result.dev_after
        print(f"dev ({int(b['pairs'])} pairs): implicit-reward accuracy {b['accuracy']:.1%} -> "
              f"{a['accuracy']:.1%} (ties {b['ties']:.0%} -> {a['ties']:.0%}), margin "
              f"{b['margin']:.4f} -> {a['margin']:.4f}, loss {b['loss']:.4f} -> {a['loss']:.4f}")
        print(f"dev: chosen has the higher per-token log-prob in {b['logp_accuracy']:.1%} -> "
              f"{a['logp_accuracy']:.1%} of pairs")
    for prompt, before, after in result.samples:
        print_sample(prompt, before, after)
    print(f"metrics: {result.metrics_file}")
    if result.dev_after and not math.isfinite(result.dev_after["loss"]):
        warn("the dev loss is not finite: lower optim.lr or beta")
