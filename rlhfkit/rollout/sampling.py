"""Next-token selection from last-position logits: temperature, top-k, top-p, then one draw.

The order (temperature -> top-k -> top-p), the filtering rules and the single
``torch.multinomial(probs, 1)`` draw over the whole batch per step match ``transformers``'
sampling loop, so an engine that uses :func:`sample_next` with the same global RNG state draws the
same tokens as ``model.generate(do_sample=True)`` (up to float rounding of the logits).
"""

from __future__ import annotations

import torch

from rlhfkit.rollout.types import SamplingParams


def filter_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[B, V] -> [B, V]: tokens scoring below the k-th best get -inf (ties with it are kept)."""
    k = min(k, scores.size(-1))
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def filter_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """[B, V] -> [B, V]: nucleus filtering (Holtzman et al. 2020).

    Sort ascending; drop the tokens whose cumulative probability (from the least likely upward) is
    <= 1 - p, i.e. keep the most likely tokens that together reach mass p; the best token always stays.
    """
    ascending, order = torch.sort(scores, descending=False, dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - p)
    drop_sorted[..., -1:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the next token of every row and its recorded log-prob.

    logits: [B, V] float32 raw last-position logits.
    Returns (tokens [B] long, logprobs [B] float32) where
    logprob = log_softmax(logits / temperature)[token] (unfiltered; temperature 1 when greedy).
    Draws exactly one ``torch.multinomial`` over all B rows when sampling (RNG use as transformers).
    """
    if params.greedy:
        tokens = torch.argmax(logits, dim=-1)
        scaled = logits
    else:
        scaled = logits / params.temperature if params.temperature != 1.0 else logits
        scores = scaled
        if params.top_k:
            scores = filter_top_k(scores, params.top_k)
        if params.top_p < 1.0:
            scores = filter_top_p(scores, params.top_p)
        probs = torch.softmax(scores, dim=-1)
        tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
    logprobs = token_logprobs(scaled, tokens)
    return tokens, logprobs


def token_logprobs(scaled_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, V], [B] -> [B]: log_softmax(scaled_logits)[b, tokens[b]] without materialising [B, V]
    log-probs twice (logsumexp once, then a gather)."""
    picked = scaled_logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(scaled_logits, dim=-1)


class seeded:
    """Context manager: run with the global torch RNG seeded to ``seed`` and restore the caller's
    RNG state afterwards (CPU, plus ``device``'s generator when it is a CUDA device).
    ``seed=None`` does nothing: sampling then draws from the caller's RNG stream."""

    def __init__(self, seed: int | None, device: torch.device | str | None = None):
        self.seed = seed
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._fork = None

    def __enter__(self) -> "seeded":
        if self.seed is not None:
            devices = [self.device] if self.device.type == "cuda" else []
            self._fork = torch.random.fork_rng(devices=devices)
            self._fork.__enter__()
            torch.manual_seed(int(self.seed))
        return self

    def __exit__(self, *exc) -> None:
        if self._fork is not None:
            self._fork.__exit__(*exc)
            self._fork = None
