"""Diversity and mode collapse of a policy's responses (SPEC section 7): pure functions over texts
or embeddings, plus one function that computes the embeddings with the policy model itself.

* distinct-n (Li et al. 2016): unique word n-grams / all word n-grams, pooled over the responses
  (the one implementation is :func:`rlhfkit.monitor.hacking.distinct_n`, here on lower-cased words);
* self-BLEU (Zhu et al. 2018, Texygen): mean BLEU of each response against the others as references
  (sacrebleu, 13a tokenisation, effective n-gram order for short texts), in [0, 1];
* mean pairwise cosine similarity of mean-pooled last hidden states;
* the share of refusals (:data:`REFUSAL_PATTERNS`) and of the most common opening (first words);
* :func:`mode_collapse_verdict`: the thresholds in :class:`CollapseThresholds`, stated in the output.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rlhfkit.config import opt

# A response is a refusal when one of these matches in its first REFUSAL_WINDOW characters.
REFUSAL_PATTERNS = (
    r"\bI (?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to)\b",
    r"\bI(?: am|'m) (?:so |very )?sorry\b",
    r"\bI apologi[sz]e\b",
    r"\bas an AI\b",
)
REFUSAL_WINDOW = 160
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


def words(text: str) -> list[str]:
    return text.lower().split()


def distinct(texts: Sequence[str], n: int) -> float:
    """Distinct-n over lower-cased whitespace words of all ``texts`` (1.0 when there is no n-gram)."""
    from rlhfkit.monitor.hacking import distinct_n

    return distinct_n([words(t) for t in texts], n)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean over i of BLEU(texts[i], references = the other texts) / 100; 0 for fewer than 2 texts.
    Identical texts give 1, texts sharing no word give 0."""
    import sacrebleu

    if len(texts) < 2:
        return 0.0
    total = 0.0
    for i, hyp in enumerate(texts):
        refs = [t for j, t in enumerate(texts) if j != i]
        total += sacrebleu.sentence_bleu(hyp, refs).score / 100.0
    return total / len(texts)


def mean_pairwise_cosine(embeddings: Any) -> float:
    """Mean cosine similarity over the n(n-1)/2 pairs of rows of ``embeddings [n, H]`` (nan for n < 2)."""
    e = np.asarray(embeddings, dtype=float)
    n = e.shape[0]
    if n < 2:
        return float("nan")
    unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T  # [n, n]
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def response_embeddings(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16,
                        max_length: int = 256):
    """``[n, H]`` float32 numpy: the model's last hidden state averaged over each text's tokens (the
    response alone, no prompt, no special tokens; right padding, so the causal states of a text do
    not depend on its batch mates)."""
    import torch

    from rlhfkit.models.forward import decoder_hidden

    device = next(model.parameters()).device
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for at in range(0, len(texts), batch_size):
                ids = [tokenizer(t or " ", add_special_tokens=False)["input_ids"][:max_length] or
                       [tokenizer.pad_token_id] for t in texts[at:at + batch_size]]
                width = max(len(i) for i in ids)
                input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(ids), width), dtype=torch.long)
                for row, toks in enumerate(ids):
                    input_ids[row, :len(toks)] = torch.tensor(toks)
                    mask[row, :len(toks)] = 1
                hidden = decoder_hidden(model, input_ids.to(device), mask.to(device)).float()  # [B, L, H]
                m = mask.to(device).unsqueeze(-1).float()
                out.append(((hidden * m).sum(1) / m.sum(1)).cpu())  # mean over real tokens: [B, H]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text.replace("\u2019", "'")[:REFUSAL_WINDOW]))


def refusal_share(texts: Sequence[str]) -> float:
    return sum(is_refusal(t) for t in texts) / len(texts) if texts else 0.0


def opening(text: str, n_words: int = 3) -> str:
    """The first ``n_words`` words, lower-cased, punctuation stripped from their ends (a word that is
    only punctuation, such as a dash, does not count)."""
    stripped = (w.strip(".,;:!?\"'()*-\u2013\u2014#") for w in words(text))
    return " ".join([w for w in stripped if w][:n_words])


def top_opening(texts: Sequence[str], n_words: int = 3) -> tuple[str, float]:
    """The most common opening and the share of responses that start with it ('' and 0 for none)."""
    counts = Counter(opening(t, n_words) for t in texts if t.strip())
    if not counts:
        return "", 0.0
    text, count = counts.most_common(1)[0]
    return text, count / len(texts)


@dataclass
class CollapseThresholds:
    max_self_bleu: float = opt(0.7, "within-prompt self-BLEU at or above this: a prompt's samples are near copies")
    min_distinct_2: float = opt(0.2, "pooled distinct-2 at or below this: the same phrases in every answer "
                                     "(the reward-hacking watch uses the same limit per batch)")
    max_top_opening: float = opt(0.5, "share of answers starting with the same words at or above this")
    min_distinct_ratio: float = opt(0.5, "distinct-2 at or below this x the baseline's: diversity halved "
                                         "against the baseline")


def mode_collapse_verdict(m: dict, t: CollapseThresholds, baseline: dict | None = None) -> list[str]:
    """The reasons ``m`` (a :func:`diversity_metrics` dict) looks mode-collapsed; empty when none.
    Cosine similarity is reported but not judged: mean-pooled hidden states of a language model are
    anisotropic (unrelated texts already score high), so only its change against a baseline means much."""
    reasons = []
    if m.get("self_bleu_within") is not None and m["self_bleu_within"] >= t.max_self_bleu:
        reasons.append(f"self-BLEU within prompts {m['self_bleu_within']:.3f} >= {t.max_self_bleu}")
    if m["distinct_2"] <= t.min_distinct_2:
        reasons.append(f"distinct-2 {m['distinct_2']:.3f} <= {t.min_distinct_2}")
    if m["top_opening_share"] >= t.max_top_opening:
        reasons.append(f"{m['top_opening_share']:.0%} of answers open with '{m['top_opening']}' "
                       f"(limit {t.max_top_opening:.0%})")
    if baseline is not None and m["distinct_2"] <= t.min_distinct_ratio * baseline["distinct_2"]:
        reasons.append(f"distinct-2 {m['distinct_2']:.3f} <= {t.min_distinct_ratio} x the baseline's "
                       f"{baseline['distinct_2']:.3f}")
    return reasons


def diversity_metrics(groups: Sequence[Sequence[str]], embeddings: Any = None) -> dict:
    """Diversity of K responses for each of P prompts (``groups [P][K]``).

    Pooled over all responses: distinct-1/2, refusal share, top opening. Within a prompt (K >= 2):
    the mean over prompts of the self-BLEU / cosine of its K samples. Across prompts: self-BLEU and
    cosine of the first sample of each prompt (the same answer to different questions).
    ``embeddings``: ``[P * K, H]`` rows in prompt-major order, or None to skip the cosines."""
    flat = [t for g in groups for t in g]
    k = min((len(g) for g in groups), default=0)
    first = [g[0] for g in groups if g]
    opening_text, opening_share = top_opening(flat)
    lengths = np.array([len(words(t)) for t in flat] or [0])
    out = {
        "distinct_1": distinct(flat, 1), "distinct_2": distinct(flat, 2),
        "self_bleu_within": float(np.mean([self_bleu(g) for g in groups])) if k >= 2 else None,
        "self_bleu_across": self_bleu(first),
        "refusal_share": refusal_share(flat), "top_opening": opening_text, "top_opening_share": opening_share,
        "length_mean": float(lengths.mean()), "length_median": float(np.median(lengths)),
        "length_p90": float(np.quantile(lengths, 0.9)),
        "cosine_within": None, "cosine_across": None,
    }
    if embeddings is not None:
        e = np.asarray(embeddings)
        starts = np.cumsum([0] + [len(g) for g in groups])
        if k >= 2:
            out["cosine_within"] = float(np.mean([mean_pairwise_cosine(e[a:b]) for a, b in zip(starts, starts[1:])]))
        out["cosine_across"] = mean_pairwise_cosine(e[starts[:-1]])
    return out
