"""AI judges (RLAIF, Lee et al. 2023; Bai et al. 2022): pairwise verdicts with a probability, both
orders asked and averaged, from a local causal LM's choice-token probabilities or an
OpenAI-compatible chat endpoint. Imports no torch and no httpx until a backend is built.

    from rlhfkit.judge import Judge, LocalBackend
    judge = Judge(LocalBackend.load("default"))
    verdict = judge.compare(prompt, response_a, response_b)   # verdict.prob = P(A better)
"""

from rlhfkit.judge.judge import Judge, JudgePair, as_judge_pair, verdict_to_pair  # noqa: F401
from rlhfkit.judge.prompts import FewShot, JudgePrompt, load_few_shot, load_principles  # noqa: F401
from rlhfkit.judge.verdict import (  # noqa: F401
    JudgeSummary,
    OrderResult,
    Verdict,
    combine_orders,
    parse_verdict,
    soft_label,
    summarize,
)


def __getattr__(name: str):
    if name == "LocalBackend":
        from rlhfkit.judge.local import LocalBackend

        return LocalBackend
    if name == "HTTPBackend":
        from rlhfkit.judge.http import HTTPBackend

        return HTTPBackend
    raise AttributeError(name)
