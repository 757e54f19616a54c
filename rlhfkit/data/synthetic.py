"""Synthetic step-labelled data made by code: arithmetic chains whose wrong steps are known.

Process supervision needs answers marked step by step (Lightman et al. 2023, "Let's verify step by
step"; Math-Shepherd, Wang et al. 2024). Here the marks come for free: a chain such as

    prompt: "Start with 12, add 7, then multiply by 3. What is the result? Show each step."
    steps:  ["12 + 7 = 19", "19 * 3 = 56", "The answer is 56."]
    marks:  [1, -1, -1]

is computed, and a mistake is injected at a chosen step. The step with the mistake is bad (-1); every
later step builds on the wrong number, so it is bad too even when its own arithmetic is right (as in
Math-Shepherd's definition: a step is good when the right answer can still be reached from it);
steps before it are good (1); an optional opening remark that does no arithmetic is neutral (0).

Every record is a :class:`~rlhfkit.data.records.StepFeedback` whose steps, joined by blank lines,
split back into the same steps with :func:`~rlhfkit.data.records.split_steps`. ``meta`` carries
``answer`` (the right result), ``given`` (the chain's final number), ``correct`` and
``first_error`` (index into ``steps`` or None), so a best-of-N run can be scored without a model.
Output is a pure function of the arguments (one ``random.Random(seed)``). ``demo:steps`` is the file
:func:`demo_steps` writes (``rlhfkit/resources/demo/steps.jsonl``).
"""

from __future__ import annotations

import random
from typing import Sequence

from rlhfkit.data.records import STEP_BAD, STEP_GOOD, STEP_NEUTRAL, Message, StepFeedback

OPS = {"+": ("add", lambda a, b: a + b), "-": ("subtract", lambda a, b: a - b),
       "*": ("multiply by", lambda a, b: a * b)}
INTRO = "Let's work through it one operation at a time."
DEMO_ARGS = {"n": 30, "seed": 0, "per_problem": 2}  # the shipped demo:steps file (60 records)


def chain_prompt(start: int, ops: Sequence[tuple[str, int]]) -> str:
    """``start`` and ``[("+", 7), ("*", 3)]`` -> "Start with 12, add 7, then multiply by 3. ..."."""
    words = [f"{OPS[op][0]} {b}" for op, b in ops]
    text = ", ".join(words[:-1]) + (", then " if len(words) > 1 else "") + words[-1]
    return f"Start with {start}, {text}. What is the result? Show each step."


def make_chain(start: int, ops: Sequence[tuple[str, int]], error_at: int | None = None,
               wrong: int | None = None, intro: bool = False) -> StepFeedback:
    """One worked chain. ``error_at`` = index of the operation whose result is written as ``wrong``
    instead of the true value (None: no mistake); later operations start from the written value."""
    if (error_at is None) != (wrong is None):
        raise ValueError("make_chain: give error_at and wrong together")
    steps, marks = ([INTRO], [STEP_NEUTRAL]) if intro else ([], [])
    value, truth, broken = start, start, False
    for i, (op, b) in enumerate(ops):
        result = OPS[op][1](value, b)
        truth = OPS[op][1](truth, b)
        if i == error_at:
            if wrong == result:
                raise ValueError(f"make_chain: wrong={wrong} is the right result of step {i}")
            result, broken = wrong, True
        steps.append(f"{value} {op} {b} = {result}")
        marks.append(STEP_BAD if broken else STEP_GOOD)
        value = result
    steps.append(f"The answer is {value}.")
    marks.append(STEP_BAD if broken else STEP_GOOD)
    first = None if error_at is None else error_at + int(intro)
    meta = {"answer": truth, "given": value, "correct": value == truth, "first_error": first}
    return StepFeedback((Message("user", chain_prompt(start, ops)),), tuple(steps), tuple(marks),
                        meta=meta)


def _problem(rng: random.Random, min_ops: int, max_ops: int) -> tuple[int, list]:
    start = value = rng.randint(2, 20)
    ops = []
    for _ in range(rng.randint(min_ops, max_ops)):
        op = rng.choice("+-*" if value < 200 else "+-")  # keep the numbers small
        if op == "*":
            b = rng.randint(2, 9)
        elif op == "-":
            b = rng.randint(1, max(1, min(20, value - 1)))  # stays positive
        else:
            b = rng.randint(1, 20)
        ops.append((op, b))
        value = OPS[op][1](value, b)
    return start, ops


def _solution(rng: random.Random, start: int, ops: list, error_rate: float) -> StepFeedback:
    intro = rng.random() < 0.3
    if rng.random() >= error_rate:
        return make_chain(start, ops, intro=intro)
    at = rng.randrange(len(ops))
    right = make_chain(start, ops[:at + 1]).meta["given"]  # the true value the mistake replaces
    delta = rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])
    return make_chain(start, ops, error_at=at, wrong=right + delta, intro=intro)


def arithmetic_chains(n: int = 50, seed: int = 0, per_problem: int = 1, error_rate: float = 0.5,
                      min_ops: int = 2, max_ops: int = 4) -> list[StepFeedback]:
    """``n`` problems x ``per_problem`` worked solutions each; a solution has a mistake with
    probability ``error_rate`` (at a uniformly chosen operation, off by 1-3 or 10)."""
    if n < 0 or per_problem < 1 or not 0.0 <= error_rate <= 1.0 or not 1 <= min_ops <= max_ops:
        raise ValueError("arithmetic_chains: need n >= 0, per_problem >= 1, error_rate in [0, 1], "
                         "1 <= min_ops <= max_ops")
    rng = random.Random(seed)
    out = []
    for k in range(n):
        start, ops = _problem(rng, min_ops, max_ops)
        for j in range(per_problem):
            record = _solution(rng, start, ops, error_rate)
            record.meta.update(problem=k, solution=j)
            out.append(record)
    return out


def demo_steps(path) -> int:
    """Write the ``demo:steps`` file (:data:`DEMO_ARGS`) to ``path``; returns the record count."""
    from rlhfkit.data.readers import write_records

    records = arithmetic_chains(**DEMO_ARGS)
    write_records(path, records)
    return len(records)
