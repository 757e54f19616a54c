"""The reward-model stage's config (``rlhfkit rm train``): a leaf module, so the stage
(reward.py), its data groups (reward_groups.py) and its evaluation (reward_eval.py) all import it
without importing each other in a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt
from rlhfkit.train.config import LoraConfig, OptimConfig, TrainConfig


@dataclass
class RMData:
    train: str = opt("demo:pairs", "preference pairs: file(s), comma-separated, or demo:pairs (HH "
                     "transcripts are parsed automatically)")
    rankings: str = opt("", "ranking files (comma-separated), trained by the comparison objective")
    scores: str = opt("", "score-feedback files (comma-separated), trained by MSE (the score objective)")
    language: str = opt("", "language-feedback files; a judge model maps each critique to a 1-7 score, "
                        "then it is regressed like a score")
    dev: str = opt("", "dev pairs file; empty = hold out dev_fraction of every training source")
    dev_fraction: float = opt(0.1, "share of each training source held out for dev when dev is empty")
    max_examples: int = opt(0, "use at most this many records per training source (0 = all)")


@dataclass
class MixWeights:
    score: float = opt(1.0, "l1: weight of the score-regression loss")
    compare: float = opt(1.0, "l2: weight of the comparison loss (pairs and rankings)")
    language: float = opt(1.0, "l3: weight of the language-feedback loss")


@dataclass
class Objective:
    pairwise: Literal["bradley_terry", "bce", "listwise"] = opt(
        "bradley_terry", "pairs: bradley_terry (-log sigmoid(r_c - r_r - margin)); bce (soft labels and "
        "ties, label 0.5); listwise (pairs sharing prompt and chosen form one preferred vs several "
        "rejected, softmax cross-entropy)")
    use_margin: bool = opt(True, "bradley_terry: subtract each pair's margin (when the record has one)")
    ranking: Literal["plackett_luce", "listwise", "pairs"] = opt(
        "plackett_luce", "rankings: Plackett-Luce likelihood of the whole order; listwise (best vs the "
        "rest); or pairs (all k(k-1)/2 ordered pairs, trained like data.train)")
    score_targets: Literal["standardize", "raw"] = opt(
        "standardize", "score/language targets: standardise per source file (mean 0, std 1, the scale "
        "of comparison rewards) or regress the raw values")
    weights: MixWeights = opt(factory=MixWeights, help="")
    judge: str = opt("default", "judge model for language feedback: default, tiny, or a causal LM folder")
    judge_batch_size: int = opt(8, "critiques judged per forward pass")


@dataclass
class NormalizeConfig:
    reference: str = opt("train", "reference set for the reward mean/std stored with the model: train "
                         "(the training responses), an SFT file (e.g. the SFT demonstrations), or none")
    max_examples: int = opt(512, "score at most this many reference responses")


@dataclass
class EnsembleConfig:
    members: int = opt(1, "train this many reward models (seed train.seed + i: other head init and "
                       "data order) and save them as one ensemble")


@dataclass
class RewardConfig:
    model: str = opt("default", "initial model: the SFT folder, default, tiny, a hub name, or an "
                     "existing reward model folder (continued training)")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    max_length: int = opt(512, "prompt+response tokens per response; longer ones are cut and counted")
    prefix_sharing: bool = opt(True, "compute each prompt once for all its responses (tree attention "
                               "mask); false = one padded row per response (same scores, slower)")
    freeze_layers: int = opt(-4, "freeze the embeddings and the lowest N transformer layers (no backward "
                             "through them: faster, less over-fitting); negative N = train only the top |N| "
                             "layers (-4 on a 30-layer model freezes 26); 0 = full fine-tuning")
    cache_frozen: bool = opt(True, "with frozen layers: compute them once per example "
                             "and reuse their output every epoch and evaluation (exact; memory: tokens x "
                             "hidden x 4 bytes)")
    dropout: float = opt(0.0, "dropout on attention in the trained layers and on the pooled state while "
                         "training (SPEC default 0: dropout off)")
    eval_batch_size: int = opt(16, "groups per forward pass in evaluation and normalisation")
    data: RMData = opt(factory=RMData, help="")
    objective: Objective = opt(factory=Objective, help="")
    normalize: NormalizeConfig = opt(factory=NormalizeConfig, help="")
    ensemble: EnsembleConfig = opt(factory=EnsembleConfig, help="")
    lora: LoraConfig = opt(factory=LoraConfig, help="")
    # Defaults chosen on HH-RLHF harmless (1.5k pairs, SmolLM2-135M; configs/rm/hh_default.yaml):
    # top 4 layers + head trained at 2e-5 for up to 2 epochs, early stopping on held-out accuracy.
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        output_dir="runs/rm", epochs=2, micro_batch_size=8, eval_every=40,
        early_stopping_patience=4), help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=2e-5, weight_decay=0.0, warmup_ratio=0.05),
                             help="")

    def validate(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.ensemble.members < 1:
            raise ValueError("ensemble.members must be >= 1")
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")
        if not any([self.data.train, self.data.rankings, self.data.scores, self.data.language]):
            raise ValueError("data: set at least one of data.train, data.rankings, data.scores, data.language")
