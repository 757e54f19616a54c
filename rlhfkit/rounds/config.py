"""``rlhfkit rounds`` config: the prompt pool, K samples per prompt, active selection and the label
budget, who labels, and the reward-model, DPO and PPO groups passed through to those stages.

The rounds command sets these keys of the passed-through groups itself, per round: ``rm.model``
(the SFT model, then round r-1's reward model: warm start), ``rm.data.train`` / ``rm.data.dev``,
``dpo.model`` / ``ppo.model`` (policy r-1), ``dpo.reference`` / ``ppo.reference``, ``dpo.data.train``
/ ``dpo.data.dev``, ``ppo.reward``, ``ppo.data.prompts``, and every ``train.output_dir``, ``device``
and ``dtype``. Everything else (steps, learning rates, ensemble size, beta, LoRA ...) is used as
given. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt
from rlhfkit.eval.policies import EvalSampling
from rlhfkit.judge.config import JudgeConfig
from rlhfkit.rounds.studio import StudioLabels
from rlhfkit.stages.dpo import DPOConfig
from rlhfkit.stages.ppo import PPOConfig
from rlhfkit.stages.reward_config import EnsembleConfig, Objective, RewardConfig
from rlhfkit.train.config import TrainConfig


def _rm_defaults() -> RewardConfig:
    # an ensemble of 3 (what disagreement selection reads), soft judge labels trained as such (bce)
    return RewardConfig(ensemble=EnsembleConfig(members=3), objective=Objective(pairwise="bce"),
                        train=TrainConfig(output_dir="", epochs=2, micro_batch_size=8))


def _dpo_defaults() -> DPOConfig:
    # judge probabilities and vote shares are soft labels: DPO trains on them as such
    return DPOConfig(soft_labels=True, train=TrainConfig(output_dir="", epochs=2, micro_batch_size=4, grad_accum=2))


@dataclass
class RoundsConfig:
    output_dir: str = opt("runs/rounds", "the run folder: state.json, rounds.json/.png and round-1/, round-2/ ...")
    model: str = opt("default", "the SFT policy (round 0): default, tiny or a Hugging Face folder")
    rounds: int = opt(2, "number of rounds (raise it and rerun the same command to add rounds)")
    prompts: str = opt("demo:prompts", "the prompt pool: a file of any record kind (its prompts are used)")
    max_prompts: int = opt(0, "use at most this many prompts of the pool (0 = all)")
    eval_prompts: int = opt(8, "prompts held out of the pool (seeded) for the evaluation of every round")
    prompts_per_round: int = opt(16, "training prompts sampled each round (taken in turn from the pool)")
    sampling: EvalSampling = opt(factory=lambda: EvalSampling(n=4, max_new_tokens=64, temperature=1.0),
                                 help="")
    selection: Literal["disagreement", "least_confident", "random"] = opt(
        "disagreement", "which candidate pairs get labels: disagreement (largest std across the previous "
                        "round's reward-model ensemble of the reward difference; needs rm.ensemble.members "
                        ">= 2), least_confident (P(a>b) closest to 0.5), random (the control); round 1 has no "
                        "reward model yet and selects at random")
    budget: int = opt(16, "pairs labelled per round (the label budget)")
    labels: Literal["judge", "studio"] = opt(
        "judge", "who labels: judge (an AI judge, the judge group) or studio (people: a pairwise project per "
                 "round, the studio group; the command stops until they are done, rerun it to go on)")
    judge: JudgeConfig = opt(factory=lambda: JudgeConfig(output_dir=""), help="")
    studio: StudioLabels = opt(factory=StudioLabels, help="")
    heldout_fraction: float = opt(0.25, "share of each round's labels held out to measure the reward model's accuracy")
    rm: RewardConfig = opt(factory=_rm_defaults, help="")
    policy: Literal["dpo", "ppo"] = opt("dpo", "how the policy is optimised each round: dpo (on the round's labels; "
                                              "cheaper on CPU) or ppo (against the round's reward model)")
    dpo_data: Literal["round", "all"] = opt("round", "DPO trains on this round's labels (on-policy) or all so far")
    reference: Literal["refresh", "sft"] = opt(
        "refresh", "the KL / DPO reference of round r: refresh (policy r-1, where round r starts) or sft "
                   "(kept at the SFT model every round)")
    dpo: DPOConfig = opt(factory=_dpo_defaults, help="")
    ppo: PPOConfig = opt(factory=PPOConfig, help="")
    eval_judge: str = opt("", "what judges round r against round r-1 and the SFT policy; never what made the "
                              "training labels: a reward-model or ensemble folder, a reward spec (length, "
                              "contains:WORDS, ...), or ai:MODEL for a local AI judge (default, tiny, a folder)")
    eval_sampling: EvalSampling = opt(factory=lambda: EvalSampling(n=2, max_new_tokens=64, temperature=1.0),
                                      help="")
    tie_eps: float = opt(0.0, "eval: score differences up to this are ties (a tie counts one half)")
    bootstrap: int = opt(1000, "eval: bootstrap resamples of the eval prompts for the confidence intervals")
    confidence: float = opt(0.95, "eval: confidence level of the intervals")
    seed: int = opt(0, "seed of the prompt split, sampling, selection and the stages")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")

    def validate(self) -> None:
        if self.rounds < 1 or self.budget < 1 or self.prompts_per_round < 1:
            raise ValueError("rounds, budget and prompts_per_round must be >= 1")
        if self.sampling.n < 2:
            raise ValueError("sampling.n must be >= 2 (pairs are made of a prompt's samples)")
        if self.eval_prompts < 1:
            raise ValueError("eval_prompts must be >= 1 (every round is evaluated)")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError("heldout_fraction must be in (0, 1)")
        if self.selection == "disagreement" and self.rm.ensemble.members < 2:
            raise ValueError("selection=disagreement needs rm.ensemble.members >= 2 (or selection=least_confident)")
        if not self.eval_judge:
            raise ValueError("eval_judge: required, a judge the training labels did not come from (a reward "
                             "model folder, a reward spec such as length, or ai:MODEL)")
        if self.labels == "judge" and self.eval_judge == f"ai:{self.judge.model}":
            raise ValueError(f"eval_judge={self.eval_judge} is the judge that made the training labels "
                             f"(judge.model={self.judge.model}); evaluate with another one")
        if self.policy == "ppo" and self.reference == "sft" and self.ppo.lora.enabled:
            raise ValueError("reference=sft with ppo.lora.enabled: the LoRA reference is policy r-1 "
                             "(adapter off); use reference=refresh or no LoRA")
