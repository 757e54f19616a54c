"""The judge: ``Judge.compare(prompt, a, b) -> Verdict`` and ``compare_many(pairs)``.

Every comparison is asked in both orders (A first, then B first) and the two probabilities are
averaged (:func:`rlhfkit.judge.verdict.combine_orders`). A backend is anything with a ``name`` and
``judge(jobs) -> [(OrderResult AB, OrderResult BA), ...]`` where a job is the pair's two
:class:`~rlhfkit.judge.prompts.JudgeMessages`: :class:`~rlhfkit.judge.local.LocalBackend` (a local
causal LM's choice-token probabilities) or :class:`~rlhfkit.judge.http.HTTPBackend` (an
OpenAI-compatible chat endpoint).

    judge = Judge(LocalBackend.load("default"))
    v = judge.compare("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "No idea.")
    v.prob, v.consistent, v.status      # P(A better), both orders agree, ok/unparseable/refused
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from rlhfkit.data.records import Conversation, PreferencePair, as_conversation
from rlhfkit.judge.prompts import JudgePrompt
from rlhfkit.judge.verdict import JudgeSummary, Verdict, combine_orders, keep, summarize


@dataclass
class JudgePair:
    """One comparison. ``label`` = known P(A better) (for accuracy), ``principle`` overrides the
    prompt's principles for this pair (a constitution draws one per comparison)."""

    prompt: Conversation
    response_a: str
    response_b: str
    label: float | None = None
    principle: str | None = None
    meta: dict = field(default_factory=dict)


def as_judge_pair(item: Any) -> JudgePair:
    """A JudgePair, a PreferencePair (A = chosen, label = its P(chosen better)) or (prompt, a, b)."""
    if isinstance(item, JudgePair):
        return item
    if isinstance(item, PreferencePair):
        meta = {"source": item.source} if item.source else {}
        return JudgePair(item.prompt, item.chosen, item.rejected, label=item.label, meta=meta)
    if isinstance(item, (tuple, list)) and len(item) == 3:
        return JudgePair(as_conversation(item[0]), item[1], item[2])
    raise TypeError(f"cannot judge {type(item).__name__}: expected JudgePair, PreferencePair or (prompt, a, b)")


class Judge:
    def __init__(self, backend: Any, prompt: JudgePrompt | None = None, min_confidence: float = 0.0,
                 chunk: int = 64):
        self.backend, self.prompt = backend, prompt or JudgePrompt()
        self.min_confidence, self.chunk = min_confidence, chunk

    @property
    def annotator(self) -> str:
        """The studio annotator name of this judge: ``ai:<model>``."""
        return f"ai:{self.backend.name}"

    def compare(self, prompt: Any, response_a: str, response_b: str, principle: str | None = None) -> Verdict:
        return self.compare_many([JudgePair(as_conversation(prompt), response_a, response_b,
                                            principle=principle)])[0]

    def compare_many(self, pairs: Iterable[Any], progress: Callable[[int], None] | None = None) -> list[Verdict]:
        """Verdicts in input order; ``progress(n_done)`` after each chunk of pairs."""
        pairs = [as_judge_pair(p) for p in pairs]
        verdicts: list[Verdict] = []
        for start in range(0, len(pairs), self.chunk):
            verdicts.extend(self._judge_chunk(pairs[start:start + self.chunk]))
            if progress is not None:
                progress(len(verdicts))
        return verdicts

    def _judge_chunk(self, pairs: Sequence[JudgePair]) -> list[Verdict]:
        jobs, metas = [], []
        for p in pairs:
            cut_before = self.prompt.truncated
            jobs.append((self.prompt.messages(p.prompt, p.response_a, p.response_b, p.principle),
                         self.prompt.messages(p.prompt, p.response_b, p.response_a, p.principle)))
            metas.append({**p.meta, "truncated": True} if self.prompt.truncated > cut_before else p.meta)
        results = self.backend.judge(jobs)
        return [combine_orders(ab, ba, label=p.label, meta=m) for p, m, (ab, ba) in zip(pairs, metas, results)]

    def kept(self, verdicts: Iterable[Verdict]) -> list[bool]:
        """Per verdict: ok and at least ``min_confidence`` sure (the pairs worth training on)."""
        return [keep(v, self.min_confidence) for v in verdicts]

    def summary(self, verdicts: Iterable[Verdict]) -> JudgeSummary:
        return summarize(verdicts, self.min_confidence)


def verdict_to_pair(pair: JudgePair, verdict: Verdict, annotator: str) -> PreferencePair | None:
    """A judge-labelled preference pair: the preferred response is ``chosen``, ``label`` = the judge's
    P(chosen better) (a soft label); None for a verdict that is not ok or exactly 0.5."""
    if verdict.preferred not in (0, 1):
        return None
    a_wins = verdict.preferred == 0
    chosen, rejected = (pair.response_a, pair.response_b) if a_wins else (pair.response_b, pair.response_a)
    p = verdict.prob if a_wins else 1.0 - verdict.prob
    meta = {**pair.meta, "judge": annotator, "consistent": verdict.consistent}
    if pair.principle:
        meta["principle"] = pair.principle
    return PreferencePair(pair.prompt, chosen, rejected, label=round(p, 6), meta=meta)
