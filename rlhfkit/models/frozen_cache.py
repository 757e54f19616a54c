"""Output of a reward model's frozen lower layers, computed once per example and reused.

With the embeddings and the lowest ``n_layers`` layers frozen (no LoRA there, no dropout there),
their output for an example never changes during training, so later epochs and evaluations run
only the trained layers. A group is anything with ``prompt_ids``, ``responses`` (lists of token
ids) and ``len(group)`` (tokens of its shared-prefix row), e.g. the reward stage's ``Group``.
"""

from __future__ import annotations

from typing import Any, Sequence


class FrozenCache:
    """Output of the frozen lower layers for each group, computed on first use and reused: later
    epochs and evaluations run only the trained layers. Exact, because nothing below
    ``n_layers`` changes (no LoRA there, no dropout there)."""

    def __init__(self, n_layers: int, pad_id: int, device: str):
        self.n_layers, self.pad_id, self.device = n_layers, pad_id, device
        self.model = None
        self.store: dict[int, tuple] = {}  # id(group) -> (group, hidden [len, H]); the ref pins the id

    def bind(self, model: Any) -> "FrozenCache":
        """The model whose (identical, frozen) lower layers fill missing entries."""
        self.model = model
        return self

    def fill(self, groups: Sequence[Any]) -> None:
        from rlhfkit.data.collate import collate_shared_prefix
        from rlhfkit.models.reward import batch_to, lower_hidden

        missing = [g for g in groups if id(g) not in self.store]
        if not missing:
            return
        batch = batch_to(collate_shared_prefix([(g.prompt_ids, g.responses) for g in missing], self.pad_id),
                         self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            hidden = lower_hidden(self.model, batch, self.n_layers)  # [B, L, H]
        finally:
            self.model.train(was_training)
        for row, g in enumerate(missing):
            self.store[id(g)] = (g, hidden[row, :len(g)].clone())

    def hidden_for(self, groups: Sequence[Any], width: int):
        """``[B, width, H]``: cached states of each group's tokens, zeros on padding."""
        import torch

        self.fill(groups)
        states = [self.store[id(g)][1] for g in groups]
        out = torch.zeros(len(groups), width, states[0].shape[-1], dtype=states[0].dtype, device=self.device)
        for row, h in enumerate(states):
            out[row, :h.shape[0]] = h
        return out
