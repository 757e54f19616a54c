"""Reward models (SPEC section 4): a causal LM's backbone plus a scalar head at the last real token.

A reward model *is* a Hugging Face ``*ForSequenceClassification`` module with ``num_labels=1``
(``RewardModel.model``), so ``AutoModelForSequenceClassification.from_pretrained(folder)`` loads
what ``rlhfkit rm train`` saves, and reward models trained elsewhere load into rlhfkit. Hugging Face
pools at the rightmost non-PAD token; rlhfkit's PAD (``<|endoftext|>``) is distinct from EOS
(``<|im_end|>``), so that is the EOS that ends the response.

Three ways to run it, all reading the head at each response's last token:

* :func:`sequence_rewards` - one (prompt + response) per row, left or right padding
  (position ids follow the attention mask, so both give the same scores);
* :func:`shared_prefix_rewards` - the training path: each row holds a prompt once and K responses
  after it, ``[P | R_1 | ... | R_K]``, with a tree-shaped attention mask (R_k sees P and itself,
  never R_j) and position ids restarting at ``len(P)`` for every response. One forward computes
  exactly what K separate forwards would, while the prompt is computed (and back-propagated) once;
  rows are bucketed by length so there is little padding;
* :class:`RewardModel` ``.score`` / ``.score_ids`` - inference for PPO, best-of-N and evaluation,
  normalised with the mean/std measured on a reference set when the model stores them.

Files beside the Hugging Face weights: ``rlhfkit_reward.json`` (normalisation, calibration range,
max_length); an ensemble folder holds ``rlhfkit_ensemble.json`` and one sub-folder per member.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

REWARD_FILE = "rlhfkit_reward.json"
ENSEMBLE_FILE = "rlhfkit_ensemble.json"
DEFAULT_MAX_LENGTH = 1024  # for reward models trained elsewhere (no rlhfkit_reward.json)
# How an ensemble combines its members (config key ``ensemble_reduce`` everywhere)
Reduction = Literal["mean", "min", "mean_minus_std"]
REDUCTIONS = get_args(Reduction)
PERCENTILES = (1, 5, 50, 95, 99)


# --------------------------------------------------------------------------------------------------
# building and loading


def head_init_std(hidden_size: int) -> float:
    """Reward head init N(0, 1/sqrt(d+1)) (Stiennon et al. 2020; Huang et al. 2024)."""
    return 1.0 / math.sqrt(hidden_size + 1)


def reward_model_from_causal_lm(lm: Any, seed: int = 0) -> Any:
    """Turn a loaded causal LM into a ``*ForSequenceClassification`` reward model in place.

    The backbone module is moved over (no copy, no second load); the LM head is dropped; the new
    scalar head is ``Linear(d, 1, bias=False)`` drawn from N(0, 1/sqrt(d+1)) with ``seed``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    with torch.device("meta"):  # skeleton only: the real backbone is moved in below
        rm = AutoModelForSequenceClassification.from_config(config)
    config = rm.config
    config.architectures = [type(rm).__name__]
    setattr(rm, rm.base_model_prefix, getattr(lm, lm.base_model_prefix))
    param = next(lm.parameters())
    hidden = config.get_text_config().hidden_size
    head = torch.nn.Linear(hidden, 1, bias=False, dtype=param.dtype, device=param.device)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * head_init_std(hidden))
    rm.score = head
    rm.train(lm.training)
    return rm


def is_reward_folder(path: str | Path) -> bool:
    """True for an rlhfkit ensemble folder or a HF folder whose architecture is sequence classification."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).exists():
        return True
    config = path / "config.json"
    if not config.exists():
        return False
    archs = json.loads(config.read_text()).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def load_sequence_classifier(path: str, dtype: str = "float32", device: str | None = None):
    """``(model, tokenizer)`` of a reward model folder (rlhfkit's or any 1-label sequence classifier)."""
    from transformers import AutoModelForSequenceClassification

    from rlhfkit.models.loading import ModelLoadError, disable_dropout, load_tokenizer, torch_dtype

    tok = load_tokenizer(path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype(dtype))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: could not load a sequence-classification model: {err}") from err
    if model.config.num_labels != 1:
        raise ModelLoadError(f"{path}: a reward model has one output (num_labels=1), this one has "
                             f"{model.config.num_labels}")
    model.config.pad_token_id = tok.pad_token_id
    disable_dropout(model)
    if device:
        model.to(device)
    model.eval()
    return model, tok


def init_reward_model(name: str, dtype: str = "float32", device: str | None = None, seed: int = 0):
    """``(model, tokenizer)`` to start training from: a causal LM (the SFT model) gets a fresh head;
    an existing reward model folder is loaded as it is (continued training)."""
    from rlhfkit.models.loading import load_causal_lm, resolve_model_path

    path = resolve_model_path(name)
    if Path(path).is_dir() and is_reward_folder(path):
        if (Path(path) / ENSEMBLE_FILE).exists():
            from rlhfkit.models.loading import ModelLoadError

            raise ModelLoadError(f"{path}: an ensemble; start from one member folder instead")
        return load_sequence_classifier(path, dtype, device)
    lm, tok = load_causal_lm(path, dtype=dtype, device=device)
    return reward_model_from_causal_lm(lm, seed=seed), tok


def load_reward_model(path: str | Path, device: str | None = None, dtype: str = "float32"):
    """Load a reward model saved by ``rlhfkit rm train`` (or any 1-label HF sequence classifier):
    a :class:`RewardModel`, or a :class:`RewardEnsemble` for an ensemble folder."""
    from rlhfkit.models.loading import ModelLoadError, resolve_model_path

    if (Path(path) / ENSEMBLE_FILE).exists():
        return RewardEnsemble.load(path, device=device, dtype=dtype)
    resolved = resolve_model_path(str(path))
    folder = Path(resolved)
    if folder.is_dir() and not is_reward_folder(folder):
        raise ModelLoadError(f"{folder}: a causal LM, not a reward model (no *ForSequenceClassification "
                             "architecture); train one with: rlhfkit rm train model=<this folder>")
    model, tok = load_sequence_classifier(resolved, dtype, device)
    info = RewardInfo.read(folder) if folder.is_dir() else RewardInfo()
    return RewardModel(model, tok, info)


# --------------------------------------------------------------------------------------------------
# forward passes


def backbone_of(model: Any) -> Any:
    """The decoder stack (``LlamaModel`` ...) under a sequence classifier, peft wrapper or not."""
    from rlhfkit.models.forward import unwrap

    base = unwrap(model)
    return getattr(base, base.base_model_prefix)


def head_of(model: Any) -> Any:
    from rlhfkit.models.forward import unwrap

    return unwrap(model).score


def last_token_index(attention_mask):
    """Index of the rightmost real token per row: ``attention_mask [B, L]`` -> ``[B]`` (long)."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def position_ids_from_mask(attention_mask):
    """0, 1, 2, ... over real tokens (left padding gets the same positions as right padding)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def pooled_hidden(model: Any, input_ids, attention_mask):
    """Final hidden state ``[B, H]`` at each row's last real token (left or right padding)."""
    from rlhfkit.models.forward import final_hidden_at

    index = last_token_index(attention_mask).unsqueeze(1)  # [B, 1]
    return final_hidden_at(backbone_of(model), index, attention_mask, position_ids_from_mask(attention_mask),
                           input_ids=input_ids).squeeze(1)


def sequence_rewards(model: Any, input_ids, attention_mask):
    """Raw rewards ``[B]`` for ``input_ids [B, L]`` (left or right padded), read at the last real token."""
    return head_of(model)(pooled_hidden(model, input_ids, attention_mask)).squeeze(-1)


def supports_layer_split(model: Any) -> bool:
    backbone = backbone_of(model)
    return hasattr(backbone, "layers") and hasattr(backbone, "norm")


def lower_hidden(model: Any, batch: dict, n_layers: int):
    """Output ``[B, L, H]`` of the lowest ``n_layers`` layers (before the final norm), no grad."""
    import torch

    from rlhfkit.models.forward import layer_range

    backbone = backbone_of(model)
    with torch.no_grad(), layer_range(backbone, 0, n_layers, final_norm=False):
        return backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        position_ids=batch["position_ids"], use_cache=False).last_hidden_state


def shared_prefix_last(model: Any, batch: dict):
    """Final hidden states ``[B, K, H]`` at each response's last token of a shared-prefix batch.
    With ``hidden_in`` (the cached output of the lowest ``start_layer`` frozen layers) only the
    layers above run; the last layer runs only where it is read (models.forward.final_hidden_at)."""
    from rlhfkit.models.forward import final_hidden_at

    inputs = ({"inputs_embeds": batch["hidden_in"], "start_layer": batch["start_layer"]} if "hidden_in" in batch
              else {"input_ids": batch["input_ids"]})
    return final_hidden_at(backbone_of(model), batch["ends"], batch["attention_mask"], batch["position_ids"],
                           **inputs)


def shared_prefix_rewards(model: Any, batch: dict, head_dropout: float = 0.0):
    """Raw rewards ``[B, K]`` (0 where not ``valid``) from a :func:`collate_shared_prefix` batch."""
    import torch.nn.functional as F

    last = shared_prefix_last(model, batch)  # [B, K, H]
    if head_dropout > 0:
        last = F.dropout(last, head_dropout, training=model.training)
    rewards = head_of(model)(last).squeeze(-1)  # [B, K]
    return rewards.masked_fill(~batch["valid"], 0.0)


def plain_rewards(model: Any, batch: dict, head_dropout: float = 0.0):
    """Raw rewards ``[B, K]`` from a :func:`collate_plain` batch (same contract as the shared path)."""
    import torch.nn.functional as F

    last = pooled_hidden(model, batch["input_ids"], batch["attention_mask"])  # [N, H]
    if head_dropout > 0:
        last = F.dropout(last, head_dropout, training=model.training)
    flat = head_of(model)(last).squeeze(-1)  # [N]
    return flat[batch["rows"]].masked_fill(~batch["valid"], 0.0)


def group_rewards(model: Any, batch: dict, head_dropout: float = 0.0):
    """Dispatch on the batch layout (``ends`` = shared prefix, ``rows`` = plain)."""
    if "ends" in batch:
        return shared_prefix_rewards(model, batch, head_dropout)
    return plain_rewards(model, batch, head_dropout)


def batch_to(batch: dict, device: Any) -> dict:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------
# normalisation and calibration


def reward_summary(raw: Sequence[float]) -> dict:
    """Mean, std (population) and the range of raw rewards seen on a reference set."""
    import torch

    values = torch.tensor(list(raw), dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError("reference set: no rewards to summarise")
    out = {"n": int(values.numel()), "mean": float(values.mean()),
           "std": float(values.std(unbiased=False)), "min": float(values.min()),
           "max": float(values.max())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(torch.quantile(values, p / 100.0))
    return out


@dataclass
class RewardInfo:
    """What rlhfkit stores beside the weights (``rlhfkit_reward.json``)."""

    max_length: int = DEFAULT_MAX_LENGTH
    normalization: dict | None = None  # {"mean", "std", "n", "reference"} on the raw scale
    calibration: dict | None = None  # reward_summary() of raw rewards on the reference set
    extra: dict = field(default_factory=dict)  # training summary (objective, dev accuracy, ...)

    @classmethod
    def read(cls, folder: str | Path) -> "RewardInfo":
        path = Path(folder) / REWARD_FILE
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        known = {k: data[k] for k in ("max_length", "normalization", "calibration", "extra") if k in data}
        return cls(**known)

    def write(self, folder: str | Path) -> None:
        from rlhfkit.utils.io import write_json

        write_json(Path(folder) / REWARD_FILE, asdict(self))


def normalize_scores(raw, normalization: dict | None):
    """(raw - mean) / std with the stored reference statistics; unchanged when there are none."""
    if not normalization:
        return raw
    return (raw - normalization["mean"]) / max(normalization["std"], 1e-8)


def _range_in_units(calibration: dict | None, normalization: dict | None) -> dict | None:
    if not calibration:
        return None
    keys = ["min", "max", "mean"] + [f"p{p}" for p in PERCENTILES]
    out = {k: float(normalize_scores(calibration[k], normalization)) for k in keys if k in calibration}
    out["n"] = calibration.get("n", 0)
    out["units"] = "normalized" if normalization else "raw"
    return out


# --------------------------------------------------------------------------------------------------
# inference API


def encode_pairs_for_scoring(tokenizer: Any, prompts: Sequence, responses: Sequence[str],
                             max_length: int) -> list[list[int]]:
    """(prompt, response) -> token ids exactly as training encodes them (chat template + EOS)."""
    from rlhfkit.data.records import as_conversation
    from rlhfkit.data.tokenize import encode_example

    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses differ in length ({len(prompts)} vs {len(responses)})")
    out = []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        conv = prompt if isinstance(prompt, tuple) else as_conversation(prompt, f"prompts[{i}]")
        out.append(encode_example(tokenizer, conv, response, max_length).input_ids)
    return out


def encode_group(tokenizer: Any, prompt: Any, responses: Sequence[str], max_length: int):
    """One prompt and K responses for :func:`collate_shared_prefix`: the prompt ids (cut from the
    left to leave room for the longest response) and each response's ids + EOS, so that
    prompt + response <= max_length for every response. Returns (prompt_ids, responses, truncated)."""
    from rlhfkit.data.records import as_conversation
    from rlhfkit.data.tokenize import encode_prompt, encode_response, fit

    conv = prompt if isinstance(prompt, tuple) else as_conversation(prompt)
    prompt_ids = encode_prompt(tokenizer, conv)
    encoded = [encode_response(tokenizer, r) for r in responses]
    fitted = fit(prompt_ids, max(encoded, key=len), max_length)
    room = max_length - len(fitted.prompt_ids)
    cut = [ids[:room] for ids in encoded]
    truncated = fitted.prompt_truncated or any(len(c) < len(e) for c, e in zip(cut, encoded))
    return fitted.prompt_ids, cut, truncated


class RewardModel:
    """A trained reward model: ``.model`` (HF sequence classifier), ``.tokenizer``, ``.info``."""

    def __init__(self, model: Any, tokenizer: Any, info: RewardInfo | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info or RewardInfo()

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        return self.info.max_length

    @property
    def normalization(self) -> dict | None:
        return self.info.normalization

    @property
    def calibration_range(self) -> dict | None:
        """min/max/mean/percentiles of rewards on the reference set, in the units ``score`` returns
        by default (normalised when normalisation stats are stored); None when never measured."""
        return _range_in_units(self.info.calibration, self.info.normalization)

    def score_ids(self, input_ids, attention_mask, normalize: bool = True):
        """Rewards ``[B]`` for ids built with rlhfkit.data.tokenize (left or right padding)."""
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                raw = sequence_rewards(self.model, input_ids.to(self.device), attention_mask.to(self.device))
        finally:
            self.model.train(was_training)
        raw = raw.float()
        return normalize_scores(raw, self.normalization) if normalize else raw

    def score(self, prompts: Sequence, responses: Sequence[str], batch_size: int = 16,
              normalize: bool = True):
        """Rewards ``[B]`` of each response to its prompt (a conversation tuple or a user string)."""
        ids = encode_pairs_for_scoring(self.tokenizer, prompts, responses, self.max_length)
        return self.score_encoded(ids, batch_size, normalize)

    def score_encoded(self, ids: Sequence[Sequence[int]], batch_size: int = 16, normalize: bool = True):
        """Rewards for already encoded (prompt + response) id lists; batches similar lengths together."""
        import torch

        from rlhfkit.data.collate import pad

        out = torch.zeros(len(ids))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            seqs = [list(ids[i]) for i in chunk]
            input_ids = pad(seqs, self.tokenizer.pad_token_id)
            mask = pad([[1] * len(s) for s in seqs], 0)
            out[chunk] = self.score_ids(input_ids, mask, normalize=False).cpu()
        return normalize_scores(out, self.normalization) if normalize else out

    def score_candidates(self, prompts: Sequence, candidates: Sequence[Sequence[str]], batch_size: int = 4,
                         normalize: bool = True) -> list:
        """Best-of-N scoring: for each prompt, the rewards ``[K]`` of its K candidate responses. Each
        prompt is computed once for all of its candidates (one shared-prefix row per prompt)."""
        import torch

        from rlhfkit.data.collate import collate_shared_prefix

        groups = [encode_group(self.tokenizer, p, list(c), self.max_length)[:2] for p, c in zip(prompts, candidates)]
        out: list = [None] * len(groups)
        order = sorted(range(len(groups)), key=lambda i: len(groups[i][0]) + sum(map(len, groups[i][1])))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), batch_size):
                    chunk = order[start:start + batch_size]
                    batch = batch_to(collate_shared_prefix([groups[i] for i in chunk], self.tokenizer.pad_token_id),
                                     self.device)
                    rewards = shared_prefix_rewards(self.model, batch).float().cpu()
                    for row, i in enumerate(chunk):
                        raw = rewards[row, :len(groups[i][1])]
                        out[i] = normalize_scores(raw, self.normalization) if normalize else raw
        finally:
            self.model.train(was_training)
        return out

    def save(self, folder: str | Path) -> Path:
        """Write an HF folder (+ tokenizer + rlhfkit_reward.json) atomically."""
        from rlhfkit.train.checkpoint import atomic_save_folder, save_hf_folder

        def write(tmp: Path) -> None:
            save_hf_folder(self.model, self.tokenizer, tmp)
            self.info.write(tmp)

        return atomic_save_folder(folder, write)


class RewardEnsemble:
    """k reward models scored together; ``reduce``: mean, min, or mean - c * std (pessimistic)."""

    def __init__(self, members: Sequence[RewardModel], calibration: dict | None = None, extra: dict | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.calibration = calibration  # reward_summary() of the mean normalised score on the reference set
        self.extra = extra or {}

    @property
    def tokenizer(self):
        return self.members[0].tokenizer

    @property
    def model(self):
        """The first member's HF module (e.g. to initialise a PPO value model)."""
        return self.members[0].model

    @property
    def max_length(self) -> int:
        return self.members[0].max_length

    @property
    def calibration_range(self) -> dict | None:
        """Range of the ensemble's mean score (members normalised) on the reference set."""
        if not self.calibration:
            return None
        units = "normalized" if all(m.normalization for m in self.members) else "raw"
        return {**_range_in_units(self.calibration, None), "units": units}

    def member_scores(self, prompts: Sequence, responses: Sequence[str], batch_size: int = 16,
                      normalize: bool = True):
        """``[M, B]``: every member's score of every response."""
        import torch

        ids = encode_pairs_for_scoring(self.tokenizer, prompts, responses, self.max_length)
        return torch.stack([m.score_encoded(ids, batch_size, normalize) for m in self.members])

    def member_scores_ids(self, input_ids, attention_mask, normalize: bool = True):
        import torch

        return torch.stack([m.score_ids(input_ids, attention_mask, normalize).cpu() for m in self.members])

    def score(self, prompts: Sequence, responses: Sequence[str], batch_size: int = 16,
              normalize: bool = True, reduce: str = "mean", c: float = 1.0):
        return reduce_members(self.member_scores(prompts, responses, batch_size, normalize), reduce, c)

    def score_ids(self, input_ids, attention_mask, normalize: bool = True, reduce: str = "mean",
                  c: float = 1.0):
        return reduce_members(self.member_scores_ids(input_ids, attention_mask, normalize), reduce, c)

    def save(self, folder: str | Path) -> Path:
        from rlhfkit.train.checkpoint import atomic_save_folder, save_hf_folder
        from rlhfkit.utils.io import write_json

        def write(tmp: Path) -> None:
            names = []
            for i, member in enumerate(self.members):
                name = f"member-{i}"
                save_hf_folder(member.model, member.tokenizer, tmp / name)
                member.info.write(tmp / name)
                names.append(name)
            self.tokenizer.save_pretrained(tmp)
            write_json(tmp / ENSEMBLE_FILE, {"members": names, "calibration": self.calibration,
                                             "extra": self.extra})

        return atomic_save_folder(folder, write)

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None, dtype: str = "float32") -> "RewardEnsemble":
        from rlhfkit.models.loading import ModelLoadError

        folder = Path(folder)
        data = json.loads((folder / ENSEMBLE_FILE).read_text())
        names = data.get("members") or []
        if not names:
            raise ModelLoadError(f"{folder / ENSEMBLE_FILE}: members: empty list")
        members = []
        for name in names:
            sub = folder / name
            if not (sub / "config.json").exists():
                raise ModelLoadError(f"{folder / ENSEMBLE_FILE}: members: {name}: no such model folder")
            model, tok = load_sequence_classifier(str(sub), dtype, device)
            members.append(RewardModel(model, tok, RewardInfo.read(sub)))
        return cls(members, data.get("calibration"), data.get("extra"))


def reduce_members(scores, reduce: str = "mean", c: float = 1.0):
    """``scores [M, B]`` -> ``[B]``: mean, min, or mean - c * std (population std over members)."""
    if reduce == "mean":
        return scores.mean(dim=0)
    if reduce == "min":
        return scores.min(dim=0).values
    if reduce == "mean_minus_std":
        return scores.mean(dim=0) - c * scores.std(dim=0, unbiased=False)
    raise ValueError(f"reduce: expected one of {', '.join(REDUCTIONS)}, got {reduce!r}")
