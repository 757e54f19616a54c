"""The judge's prompt: instruction, principles, few-shot examples, the conversation, the two responses.

One template serves both backends. The user message reads::

    <instruction>            (conditioned on the principles: one string, or a constitution's list)
    <few-shot examples>      (optional; each ends "Verdict: A" or "Verdict: B")
    Conversation: ...
    Response A: <first>      <- everything above this line's response text is the same in both
    Response B: <second>        orders, so the local backend computes it once (``JudgeMessages.split``)
    <question>               (answer "Verdict: A" / "Verdict: B", or reason first, then the verdict)

The local backend renders it with the model's chat template and prefills the assistant turn with
``Verdict:``, then reads the next-token probabilities of `` A`` and `` B``; the HTTP backend sends the
messages as they are and parses the reply (or reads the choice token's log-probabilities).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.data.records import Conversation, DataError

DEFAULT_SYSTEM = "You are a careful, impartial judge of AI assistant responses."
DEFAULT_PRINCIPLE = ("Choose the response that is more helpful, honest and harmless: it answers the "
                     "user's request well, is accurate, and avoids harmful, unethical or offensive content.")
VERDICT_LEAD = "Verdict:"
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class FewShot:
    """A worked example: ``verdict`` is "A" or "B"; ``reasoning`` is shown when the judge reasons."""

    prompt: Conversation
    response_a: str
    response_b: str
    verdict: str
    reasoning: str = ""


@dataclass(frozen=True)
class JudgeMessages:
    """Chat messages for one order; ``head + tail`` is the user message, ``head`` ends just before the
    first response (identical in both orders of a pair)."""

    system: str
    head: str
    tail: str

    def chat(self) -> list[dict]:
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": self.head + self.tail}]


@dataclass
class JudgePrompt:
    principles: tuple = (DEFAULT_PRINCIPLE,)
    few_shot: tuple = ()
    reasoning: bool = False
    system: str = DEFAULT_SYSTEM
    max_chars: int = 4000  # per response and for the conversation (its end is kept)
    truncated: int = field(default=0, compare=False)  # texts cut so far (reported in the summary)

    def messages(self, prompt: Conversation, first: str, second: str,
                 principle: str | None = None) -> JudgeMessages:
        """The messages that show ``first`` as Response A and ``second`` as Response B. ``principle``
        replaces the configured principles for this comparison (a constitution draws one per pair)."""
        head = "\n\n".join(filter(None, [self._instruction(principle), self._examples(),
                                         "Conversation:\n" + self._cut(_render_conversation(prompt), True),
                                         "Response A:\n"]))
        tail = (f"{self._cut(first)}\n\nResponse B:\n{self._cut(second)}\n\n"
                + self._question())
        return JudgeMessages(self.system, head, tail)

    def _instruction(self, principle: str | None) -> str:
        principles = (principle,) if principle else tuple(self.principles)
        intro = "Compare two responses of an AI assistant to the last user turn of a conversation."
        if len(principles) == 1:
            return f"{intro}\nJudge them by this principle: {principles[0]}"
        listed = "\n".join(f"- {p}" for p in principles)
        return f"{intro}\nJudge them by these principles:\n{listed}"

    def _question(self) -> str:
        if self.reasoning:
            return ("Which response is better? Explain your reasoning in a few sentences, then end with "
                    f"a final line \"{VERDICT_LEAD} A\" or \"{VERDICT_LEAD} B\".")
        return f"Which response is better? Answer \"{VERDICT_LEAD} A\" or \"{VERDICT_LEAD} B\" and nothing else."

    def _examples(self) -> str:
        if not self.few_shot:
            return ""
        blocks = []
        for i, ex in enumerate(self.few_shot, 1):
            why = f"{ex.reasoning.strip()}\n" if self.reasoning and ex.reasoning else ""
            blocks.append(f"Example {i}:\nConversation:\n{self._cut(_render_conversation(ex.prompt), True)}"
                          f"\n\nResponse A:\n{self._cut(ex.response_a)}\n\nResponse B:\n"
                          f"{self._cut(ex.response_b)}\n\n{why}{VERDICT_LEAD} {ex.verdict}")
        return "Examples of good judgements:\n\n" + "\n\n".join(blocks) + "\n\nNow the task."

    def _cut(self, text: str, keep_end: bool = False) -> str:
        if len(text) <= self.max_chars:
            return text
        self.truncated += 1
        return ("..." + text[-self.max_chars:]) if keep_end else (text[:self.max_chars] + "...")


def _render_conversation(prompt: Conversation) -> str:
    return "\n".join(f"{ROLE_NAMES.get(m.role, m.role)}: {m.content}" for m in prompt)


# --------------------------------------------------------------------------------------------------
# files: principles (a constitution's YAML list) and few-shot examples (a pairs file)

PRINCIPLE_KEYS = ("name", "principle", "critique", "revision")


@dataclass(frozen=True)
class Principle:
    """One principle of a constitution (Bai et al. 2022). ``principle`` is the comparison wording the
    judge applies; ``critique`` and ``revision`` are the requests that make a model criticise its own
    answer under the principle and rewrite it (empty in a judge-only principles file)."""

    name: str
    principle: str
    critique: str = ""
    revision: str = ""


def load_principles(path: str | os.PathLike) -> tuple:
    """The comparison wordings of a principles file (see :func:`read_principles`)."""
    return tuple(p.principle for p in read_principles(path))


def read_principles(path: str | os.PathLike, requests: bool = False) -> tuple:
    """Principles from YAML: a list of strings, a list of mappings with the keys ``name``,
    ``principle`` (the comparison wording), ``critique`` and ``revision``, or a mapping whose
    ``principles`` key holds such a list (a constitution). ``requests=True`` (a constitution for
    critique and revision) requires ``name``, ``critique`` and ``revision`` in every entry, and
    unique names. Errors read ``file:line: principles[i].key: problem``."""
    path = Path(path)
    items = _principle_items(path)
    out = tuple(_principle(item, f"{path}:{line}", i, requests) for i, (item, line) in enumerate(items))
    names = [p.name for p in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DataError(f"{path}:{items[i][1]}", f"principles[{i}].name",
                            f"{name!r} is already the name of principles[{names.index(name)}]")
    return out


def _principle_items(path: Path) -> list:
    """[(item, line)] of the file's principles list (YAML line numbers are 1-based)."""
    import yaml

    from rlhfkit.config import load_yaml

    if not path.exists():
        raise DataError(str(path), "file", "no such principles file")
    text = path.read_text(encoding="utf-8")
    try:
        data = load_yaml(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise DataError(f"{path}:{mark.line + 1}" if mark else str(path), "yaml",
                        str(getattr(err, "problem", err))) from None
    if isinstance(data, dict):
        data = data.get("principles")
        node = next((v for k, v in node.value if k.value == "principles"), None)
    if not isinstance(data, list) or not data:
        raise DataError(str(path), "principles", "expected a non-empty list of principles")
    return [(item, sub.start_mark.line + 1) for item, sub in zip(data, node.value)]


def _principle(item: Any, where: str, i: int, requests: bool) -> Principle:
    key = f"principles[{i}]"
    if isinstance(item, str) and item.strip() and not requests:
        return Principle(f"principle-{i + 1}", item.strip())
    if not isinstance(item, dict):
        want = ("a mapping with name, principle, critique and revision" if requests
                else "a non-empty string or a mapping with a 'principle' string")
        raise DataError(where, key, f"expected {want}")
    unknown = [k for k in item if k not in PRINCIPLE_KEYS]
    if unknown:
        raise DataError(where, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(PRINCIPLE_KEYS)})")
    needed = PRINCIPLE_KEYS if requests else ("principle",)
    for name in PRINCIPLE_KEYS:
        value = item.get(name)
        if (name in needed or value is not None) and (not isinstance(value, str) or not value.strip()):
            raise DataError(where, f"{key}.{name}", "expected a non-empty string")
    text = {k: str(item.get(k) or "").strip() for k in PRINCIPLE_KEYS}
    return Principle(text["name"] or f"principle-{i + 1}", text["principle"], text["critique"],
                     text["revision"])


def load_few_shot(path: str | os.PathLike, limit: int | None = None) -> tuple:
    """Few-shot examples from a preference-pairs file (any format rlhfkit.data reads). The chosen
    response is shown as A in the 1st, 3rd, ... example and as B in the others, so the examples
    themselves teach no position preference; a ``reasoning`` key (kept in ``meta``) is the example's
    reasoning."""
    from rlhfkit.data.sources import load

    pairs = load(str(path), "pairs", limit=limit).records
    out = []
    for i, pair in enumerate(pairs):
        reasoning = str(pair.meta.get("reasoning", ""))
        if i % 2 == 0:
            out.append(FewShot(pair.prompt, pair.chosen, pair.rejected, "A", reasoning))
        else:
            out.append(FewShot(pair.prompt, pair.rejected, pair.chosen, "B", reasoning))
    return tuple(out)
