"""Backend (a): a local causal LM reads its preference from the next-token probabilities of the two
choice tokens (RLAIF, Lee et al. 2023): the prompt is rendered with the model's chat template, the
assistant turn is prefilled with ``Verdict:``, and P(first better) = softmax over {`` A``, `` B``}.

Both orders of a pair share everything before the first response (instruction, principles,
few-shot examples, the conversation), so with ``share_prefix`` (the default) one row holds
``[prefix | order AB | order BA]`` and the prefix is computed once (the layout of
:func:`rlhfkit.data.collate.collate_shared_prefix`: each order attends to the prefix and causally
to itself). ``share_prefix=False`` runs each order as its own row (the reference, and the baseline of
benchmarks/judge_throughput.py). The LM head runs only at the two read positions.
"""

from __future__ import annotations

from typing import Any, Sequence

from rlhfkit.data.records import Message
from rlhfkit.judge.prompts import VERDICT_LEAD, JudgeMessages
from rlhfkit.judge.verdict import OrderResult, soft_label

SPLIT = "\x00judge-split\x00"  # marks where the shared prefix ends inside the rendered chat text
CHOICE_TEXTS = (" A", " B")  # the tokens after "Verdict:"


class LocalBackend:
    """``judge(jobs)`` -> one (AB result, BA result) per job; a job is (messages AB, messages BA)."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "local", batch_size: int = 8,
                 share_prefix: bool = True):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.share_prefix = batch_size, share_prefix
        self.choice_ids = tuple(_single_token(tokenizer, t) for t in CHOICE_TEXTS)
        self.tokens = 0  # tokens run through the model so far (prefixes counted once when shared)

    @classmethod
    def load(cls, name: str = "default", dtype: str = "float32", device: str | None = None, **kw):
        from rlhfkit.models.loading import load_causal_lm

        model, tok = load_causal_lm(name, dtype=dtype, device=device)
        model.eval()
        return cls(model, tok, name=_short_name(name), **kw)

    def encode(self, ab: JudgeMessages, ba: JudgeMessages) -> tuple[list, list]:
        """(prefix ids, [ids of order AB after the prefix, ids of order BA after it])."""
        from rlhfkit.data.tokenize import render_prompt

        parts = []
        for m in (ab, ba):
            convo = ((Message("system", m.system),) if m.system else ()) + (
                Message("user", m.head + SPLIT + m.tail),)
            pre, post = render_prompt(self.tokenizer, convo).split(SPLIT)
            parts.append((pre, post + VERDICT_LEAD))
        if parts[0][0] != parts[1][0]:
            raise ValueError("the two orders of a pair must share the text before the first response")
        ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in
               (parts[0][0], parts[0][1], parts[1][1])]
        return ids[0], [ids[1], ids[2]]

    def judge(self, jobs: Sequence[tuple[JudgeMessages, JudgeMessages]]) -> list[tuple[OrderResult, OrderResult]]:
        import torch

        groups = [self.encode(ab, ba) for ab, ba in jobs]
        order = sorted(range(len(groups)), key=lambda i: -(len(groups[i][0]) + sum(map(len, groups[i][1]))))
        out: list = [None] * len(groups)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                logp = self.choice_logprobs([groups[i] for i in idx])  # [b, 2 orders, 2 choices]
                for row, i in enumerate(idx):
                    out[i] = tuple(OrderResult(soft_label(float(logp[row, k, 0]), float(logp[row, k, 1])))
                                   for k in range(2))
        return out

    def choice_logprobs(self, groups: list):
        """Log-probabilities ``[B, 2, 2]`` (order, choice) of the choice tokens after each order."""
        import torch

        from rlhfkit.data.collate import collate_plain, collate_shared_prefix
        from rlhfkit.models.forward import final_hidden_at, unwrap
        from rlhfkit.models.reward import backbone_of, batch_to, pooled_hidden

        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        if self.share_prefix:
            batch = batch_to(collate_shared_prefix(groups, pad, dtype=self.model.dtype), device)
            hidden = final_hidden_at(backbone_of(self.model), batch["ends"], batch["attention_mask"],
                                     batch["position_ids"], input_ids=batch["input_ids"])  # [B, 2, H]
        else:
            batch = batch_to(collate_plain(groups, pad), device)
            flat = pooled_hidden(self.model, batch["input_ids"], batch["attention_mask"])  # [2B, H]
            hidden = flat[batch["rows"]]  # [B, 2, H]
        self.tokens += int(batch["tokens"])
        logits = unwrap(self.model).get_output_embeddings()(hidden).float()  # [B, 2, V]
        logp = torch.log_softmax(logits, dim=-1)
        return logp[..., list(self.choice_ids)]  # [B, 2, 2]


def _single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the judge needs {text!r} to be one token of this tokenizer, got {len(ids)}")
    return ids[0]


def _short_name(name: str) -> str:
    """The model's name in ``ai:<name>``: a folder's name, the default model's real name."""
    from pathlib import Path

    from rlhfkit.models.loading import DEFAULT_ALIASES

    text = str(name).rstrip("/")
    if text.lower() in DEFAULT_ALIASES:
        return DEFAULT_ALIASES[-1]
    return Path(text).name if ("/" in text and Path(text).exists()) else text
