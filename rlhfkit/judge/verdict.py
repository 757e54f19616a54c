"""What a judge says about one pair, and the arithmetic that turns its raw output into a label.

Pure functions, no torch (the local backend hands over two log-probabilities, the HTTP backend a
reply text and maybe log-probabilities):

* :func:`soft_label`: RLAIF soft label from the choice tokens' log-probabilities (Lee et al. 2023,
  section 2.1): P(A) = exp(l_A) / (exp(l_A) + exp(l_B)) = sigmoid(l_A - l_B).
* :func:`combine_orders`: position-debiased probability, the mean of the two orders (Lee et al. 2023,
  section 2.1.1: "we make two inferences with the order swapped and average").
* :func:`parse_verdict`: a reply text -> (choice, status); an unparseable or refused reply is a
  status, never a guess.
* :func:`summarize`: position-inconsistency share, unparseable/refused counts, accuracy vs labels.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal, Sequence

Status = Literal["ok", "unparseable", "refused"]
STATUS_ORDER = ("refused", "unparseable", "ok")  # when the two orders disagree, the worse one wins


@dataclass
class OrderResult:
    """One order asked: ``p_first`` = P(the response shown first is better), None unless ``ok``."""

    p_first: float | None
    status: Status = "ok"
    source: Literal["logprobs", "parsed", "none"] = "logprobs"
    text: str = ""  # the reply (HTTP backend), empty for the local backend


@dataclass
class Verdict:
    """The judge's label for (prompt, A, B), both orders asked.

    ``prob`` = P(A better), the mean of ``p_ab`` (A shown first) and ``p_ba`` (B shown first, already
    turned into P(A better)); None unless both orders are ``ok``. ``consistent``: both orders prefer
    the same response (None unless ``ok``). ``label`` = the known P(A better) when the pair came with
    one (chosen/rejected data), for accuracy.
    """

    prob: float | None
    p_ab: float | None
    p_ba: float | None
    status: Status
    consistent: bool | None
    sources: tuple = ()
    texts: tuple = ()
    label: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def confidence(self) -> float | None:
        """max(P(A), P(B)): 0.5 = no preference, 1 = certain."""
        return None if self.prob is None else max(self.prob, 1.0 - self.prob)

    @property
    def preferred(self) -> int | str | None:
        """0 (A), 1 (B), "tie" (exactly 0.5) or None (not ok)."""
        if self.prob is None:
            return None
        return "tie" if self.prob == 0.5 else (0 if self.prob > 0.5 else 1)

    def to_json(self) -> dict:
        data = asdict(self)
        data["sources"], data["texts"] = list(self.sources), list(self.texts)
        data["confidence"] = self.confidence
        return data


def soft_label(logp_a: float, logp_b: float) -> float:
    """P(A) from the log-probabilities of the two choice tokens, normalised over the two.

    RLAIF (Lee et al. 2023): P(A) = exp(l_A) / (exp(l_A) + exp(l_B)) = sigmoid(l_A - l_B).
    """
    d = logp_a - logp_b
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)  # stable for large negative d
    return e / (1.0 + e)


def _side(p: float) -> int:
    """+1 prefers the first-named response A, -1 prefers B, 0 no preference."""
    return (p > 0.5) - (p < 0.5)


def combine_orders(ab: OrderResult, ba: OrderResult, label: float | None = None,
                   meta: dict | None = None) -> Verdict:
    """Both orders -> one Verdict.

    ``ab``: A shown first, so P(A better) = ab.p_first. ``ba``: B shown first, so
    P(A better) = 1 - ba.p_first. prob = (p_ab + p_ba) / 2 (order-swap averaging). A failed order
    makes the verdict fail with the worse status (refused before unparseable): one order alone
    would carry the position bias the swap is there to remove.
    """
    p_ab = ab.p_first if ab.status == "ok" else None
    p_ba = None if ba.status != "ok" or ba.p_first is None else 1.0 - ba.p_first
    status = min(ab.status, ba.status, key=STATUS_ORDER.index)
    prob = consistent = None
    if status == "ok" and p_ab is not None and p_ba is not None:
        prob = (p_ab + p_ba) / 2.0
        consistent = _side(p_ab) == _side(p_ba)
    elif status == "ok":
        status = "unparseable"
    return Verdict(prob, p_ab, p_ba, status, consistent, (ab.source, ba.source),
                   (ab.text, ba.text) if (ab.text or ba.text) else (), label, dict(meta or {}))


# --------------------------------------------------------------------------------------------------
# parsing a reply text

# a keyword, optional "is", ":" or "=", quotes or bold marks, then the letter: capital A or B only, so
# the article in "the answer is a good one" is not read as a verdict
_VERDICT = re.compile(r"(?i:verdict|answer|better response|preferred response|choice)(?:\s+(?i:is))?\s*"
                      r"[:=\-]?[\s\"'\u201c\u201d*]*(?i:response\s+)?\(?\b(A|B|(?i:tie))\b")
_BARE = re.compile(r"^\W*(?:response\s+)?\(?(A|B)\)?\W*$", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(?:I\s+(?:can(?:no|')t|cannot|won'?t|will not|am not able|'m not able|"
                      r"am unable|'m unable)|I'm sorry|I am sorry|as an AI|I must decline|"
                      r"not (?:comfortable|appropriate) (?:to|for me))", re.IGNORECASE)


def parse_verdict(text: str) -> tuple[str | None, Status]:
    """A reply -> (``"A"`` / ``"B"`` / ``"tie"``, ``"ok"``) or (None, ``"unparseable"`` / ``"refused"``).

    Accepted: a labelled verdict (``Verdict: A``, ``Answer: (B)``, ``The better response is
    Response A``; the last one counts, and labelled verdicts that disagree are unparseable) or a reply
    that is only the letter (``A``, ``(B).``, ``Response A``). Otherwise a reply that declines
    (``I cannot``, ``I'm sorry``, ``As an AI``) is ``refused``, anything else ``unparseable``.
    """
    text = (text or "").strip()
    found = [m.group(1).upper() if m.group(1).lower() != "tie" else "tie" for m in _VERDICT.finditer(text)]
    if found:
        if len(set(found)) > 1:
            return None, "unparseable"
        return found[-1], "ok"
    bare = _BARE.match(text)
    if bare:
        return bare.group(1).upper(), "ok"
    if _REFUSAL.search(text):
        return None, "refused"
    return None, "unparseable"


def choice_probability(choice: str) -> float:
    """A parsed (hard) verdict as P(first better): A -> 1, B -> 0, tie -> 0.5."""
    return {"A": 1.0, "B": 0.0, "tie": 0.5}[choice]


# --------------------------------------------------------------------------------------------------
# summaries


@dataclass
class JudgeSummary:
    pairs: int
    ok: int
    unparseable: int
    refused: int
    inconsistent: int  # ok verdicts whose two orders prefer different responses
    inconsistent_share: float | None  # inconsistent / ok
    mean_confidence: float | None
    kept: int  # ok verdicts at or above min_confidence
    labelled: int  # ok verdicts with a non-tie known label
    accuracy: float | None  # share of labelled verdicts on the label's side (a 0.5 verdict counts 0.5)

    def to_json(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        pct = (lambda x: "n/a" if x is None else f"{x:.1%}")
        out = [f"{self.pairs} pairs judged: {self.ok} ok, {self.unparseable} unparseable, "
               f"{self.refused} refused",
               f"position-inconsistent: {self.inconsistent} of {self.ok} ({pct(self.inconsistent_share)})",
               f"kept at the confidence threshold: {self.kept}"]
        if self.mean_confidence is not None:
            out.append(f"mean confidence: {self.mean_confidence:.3f}")
        if self.labelled:
            out.append(f"accuracy vs labels: {pct(self.accuracy)} of {self.labelled} labelled pairs")
        return out


def agreement_with_label(prob: float, label: float) -> float | None:
    """1 when the verdict is on the label's side of 0.5, 0 on the other, 0.5 for a 0.5 verdict;
    None for a tie label (nothing to agree with)."""
    want = _side(label)
    if want == 0:
        return None
    got = _side(prob)
    return 0.5 if got == 0 else float(got == want)


def keep(verdict: Verdict, min_confidence: float = 0.0) -> bool:
    return verdict.ok and verdict.confidence is not None and verdict.confidence >= min_confidence


def summarize(verdicts: Iterable[Verdict], min_confidence: float = 0.0) -> JudgeSummary:
    verdicts = list(verdicts)
    ok = [v for v in verdicts if v.ok]
    inconsistent = sum(1 for v in ok if not v.consistent)
    scores = [s for v in ok if v.label is not None
              for s in [agreement_with_label(v.prob, v.label)] if s is not None]
    return JudgeSummary(
        pairs=len(verdicts), ok=len(ok),
        unparseable=sum(1 for v in verdicts if v.status == "unparseable"),
        refused=sum(1 for v in verdicts if v.status == "refused"),
        inconsistent=inconsistent, inconsistent_share=inconsistent / len(ok) if ok else None,
        mean_confidence=_mean([v.confidence for v in ok]),
        kept=sum(1 for v in verdicts if keep(v, min_confidence)),
        labelled=len(scores), accuracy=_mean(scores))


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
