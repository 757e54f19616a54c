"""Turning conversations into token ids, the same way in every stage.

The prompt is rendered with the model's chat template (``add_generation_prompt=True``), so training
sees exactly what generation will see; the response is tokenized on its own and followed by the EOS
token that ends an assistant turn. Prompt and response are tokenized separately so the boundary
between them is exact (no merge of the last prompt token with the first response token).

Truncation is never silent: :class:`Encoded` says what was cut, and the stages count and report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhfkit.data.records import Conversation

FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass
class Encoded:
    prompt_ids: list
    response_ids: list
    prompt_truncated: bool = False
    response_truncated: bool = False  # the response lost its end (and its EOS) to max_length

    @property
    def input_ids(self) -> list:
        return self.prompt_ids + self.response_ids

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def render_prompt(tokenizer: Any, prompt: Conversation) -> str:
    """The text that precedes the assistant's answer (chat template, or a plain fallback)."""
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = "".join(f"{FALLBACK_ROLES[m['role']]}: {m['content']}\n" for m in messages)
    return turns + "Assistant: "


def end_of_turn_id(tokenizer: Any) -> int:
    return tokenizer.eos_token_id


def encode_prompt(tokenizer: Any, prompt: Conversation) -> list:
    return tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]


def encode_response(tokenizer: Any, response: str) -> list:
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [end_of_turn_id(tokenizer)]


def fit(prompt_ids: list, response_ids: list, max_length: int, min_response: int = 16) -> Encoded:
    """Fit into ``max_length``: cut the prompt from the left first (keeping its end, where the
    question is), but never below what leaves ``min_response`` response tokens; then cut the response."""
    total = len(prompt_ids) + len(response_ids)
    if total <= max_length:
        return Encoded(prompt_ids, response_ids)
    overflow = total - max_length
    prompt_room = max(0, len(prompt_ids) - max(1, max_length - min(min_response, len(response_ids))))
    cut_prompt = min(overflow, max(prompt_room, 0))
    if cut_prompt < overflow:
        cut_prompt = min(overflow, max(0, len(prompt_ids) - max_length // 2))
    new_prompt = prompt_ids[cut_prompt:]
    room = max_length - len(new_prompt)
    new_response = response_ids[:room]
    return Encoded(new_prompt, new_response, prompt_truncated=cut_prompt > 0,
                   response_truncated=len(new_response) < len(response_ids))


def encode_example(tokenizer: Any, prompt: Conversation, response: str, max_length: int) -> Encoded:
    return fit(encode_prompt(tokenizer, prompt), encode_response(tokenizer, response), max_length)
