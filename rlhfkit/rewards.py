"""Reward sources behind one contract (SPEC sections 5-6).

A reward function is any callable ``reward_fn(prompts, responses) -> rewards`` where ``prompts`` are
conversations (tuples of Message) or strings, ``responses`` are strings, and ``rewards`` is a float
tensor ``[B]``, a list of floats, or ``{"rewards": ..., "logs": {...}}`` (OpenRLHF-style extras that
are logged). Rule-based rewards, verifiers and test harnesses plug in this way; a trained reward
model or ensemble is wrapped to the same contract.

:func:`load_reward` turns a config string into a :class:`RewardSource`:

* a reward-model or ensemble folder saved by ``rlhfkit rm train`` (or any HF sequence-classification
  folder with one label);
* ``contains:word[,word...]``: 1.0 when the response contains any of the words (case-insensitive);
* ``regex:PATTERN``: 1.0 when the pattern matches the response;
* ``length`` or ``length:N``: response length in words divided by N (default 10): deliberately
  hackable, for testing the reward-hacking watch;
* ``python:package.module:function`` or ``path/to/file.py:function``: a user function.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rlhfkit.errors import RlhfkitError


class RewardError(RlhfkitError, ValueError):
    """A reward spec or a reward function's output is unusable; the message says which."""


@dataclass
class RewardSource:
    fn: Callable[[Sequence[Any], Sequence[str]], Any]
    name: str
    calibration_range: tuple[float, float] | None = None  # rewards seen on the RM's reference set
    model: Any = None  # the reward model object when there is one (value-model init, score_ids)
    last_logs: dict = field(default_factory=dict)

    def __call__(self, prompts: Sequence[Any], responses: Sequence[str]):
        import torch

        if len(prompts) != len(responses):
            raise RewardError(f"reward {self.name}: {len(prompts)} prompts but {len(responses)} responses")
        out = self.fn(list(prompts), list(responses))
        self.last_logs = {}
        if isinstance(out, dict):
            if "rewards" not in out:
                raise RewardError(f"reward {self.name}: a dict result needs a 'rewards' key")
            self.last_logs = dict(out.get("logs", {}))
            out = out["rewards"]
        rewards = torch.as_tensor(out, dtype=torch.float32).detach().cpu().reshape(-1)
        if rewards.numel() != len(responses):
            raise RewardError(f"reward {self.name}: returned {rewards.numel()} rewards for "
                              f"{len(responses)} responses")
        if not torch.isfinite(rewards).all():
            raise RewardError(f"reward {self.name}: returned a non-finite reward")
        return rewards

    def score_groups(self, prompts: Sequence[Any], groups: Sequence[Sequence[str]], batch_size: int = 32) -> list:
        """Rewards ``[prompt][response]`` of several responses per prompt (best-of-N, GRPO groups).

        A single reward model computes each prompt once for all of its responses (one shared-prefix
        row per prompt, :meth:`RewardModel.score_candidates`); anything else is called on flat
        chunks of ``batch_size`` responses."""
        score_candidates = getattr(self.model, "score_candidates", None)
        if score_candidates is not None:
            per_prompt = max(1, max((len(g) for g in groups), default=1))
            return [r.tolist() for r in score_candidates(list(prompts), [list(g) for g in groups],
                                                         batch_size=max(1, batch_size // per_prompt))]
        flat = [(p, text) for p, texts in enumerate(groups) for text in texts]
        scores: list[float] = []
        for at in range(0, len(flat), batch_size):
            chunk = flat[at:at + batch_size]
            scores += self([prompts[p] for p, _ in chunk], [t for _, t in chunk]).tolist()
        out, at = [], 0
        for texts in groups:
            out.append(scores[at:at + len(texts)])
            at += len(texts)
        return out


def contains_reward(words: Sequence[str]) -> Callable:
    lowered = [w.lower() for w in words if w]

    def fn(prompts, responses):
        return [1.0 if any(w in r.lower() for w in lowered) else 0.0 for r in responses]

    return fn


def regex_reward(pattern: str) -> Callable:
    compiled = re.compile(pattern)

    def fn(prompts, responses):
        return [1.0 if compiled.search(r) else 0.0 for r in responses]

    return fn


def length_reward(per: float = 10.0) -> Callable:
    def fn(prompts, responses):
        return [len(r.split()) / per for r in responses]

    return fn


def _user_function(target: str) -> Callable:
    module_name, _, func_name = target.rpartition(":")
    if not module_name or not func_name:
        raise RewardError(f"reward '{target}': expected module:function or file.py:function")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.exists():
            raise RewardError(f"reward '{target}': {path}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise RewardError(f"reward '{target}': cannot import {module_name}: {err}") from err
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise RewardError(f"reward '{target}': {module_name} has no function {func_name}")
    return fn


def _model_reward(path: Path, device: str | None, reduce: str) -> RewardSource:
    from rlhfkit.models.reward import load_reward_model

    rm = load_reward_model(path, device=device)
    if hasattr(rm, "member_scores"):
        fn = lambda prompts, responses: rm.score(prompts, responses, reduce=reduce)  # noqa: E731
    else:
        fn = rm.score
    return RewardSource(fn=fn, name=str(path), calibration_range=getattr(rm, "calibration_range", None),
                        model=rm)


def load_reward(spec: str | Callable, device: str | None = None, reduce: str = "mean") -> RewardSource:
    """Build a :class:`RewardSource` from a callable or a spec string (see the module docstring).
    ``reduce`` picks how an ensemble combines members: mean, min or mean_minus_std."""
    if isinstance(spec, RewardSource):
        return spec
    if callable(spec):
        return RewardSource(fn=spec, name=getattr(spec, "__name__", "reward_fn"))
    text = str(spec).strip()
    kind, _, arg = text.partition(":")
    if kind == "contains" and arg:
        return RewardSource(contains_reward(arg.split(",")), text)
    if kind == "regex" and arg:
        try:
            return RewardSource(regex_reward(arg), text)
        except re.error as err:
            raise RewardError(f"reward '{text}': bad regular expression: {err}") from err
    if kind == "length":
        try:
            per = float(arg) if arg else 10.0
        except ValueError as err:
            raise RewardError(f"reward '{text}': length:N needs a number") from err
        return RewardSource(length_reward(per), text)
    if kind == "python" and arg:
        return RewardSource(_user_function(arg), text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _model_reward(path, device, reduce)
    if ".py:" in text:
        return RewardSource(_user_function(text), text)
    raise RewardError(
        f"reward '{text}': not a reward-model folder, and not one of contains:WORDS, regex:PATTERN, "
        "length[:N], python:module:function, file.py:function")
