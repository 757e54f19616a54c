"""soft_labels=true: a pair's label P(chosen better) travels from the record to the loss."""

import pytest
import torch

from rlhfkit.config import ConfigError, load_config
from rlhfkit.data.records import Message, PreferencePair
from rlhfkit.stages.dpo import DPOConfig, collate_pairs, dpo_inputs, encode_pair, orient

PROMPT = (Message("user", "hi"),)


def test_orient_keeps_soft_labels_when_asked():
    pairs = [PreferencePair(PROMPT, "a", "b", label=0.8), PreferencePair(PROMPT, "c", "d", label=0.3),
             PreferencePair(PROMPT, "e", "f", label=0.5)]
    out, counts = orient(pairs, soft=True)
    assert [(p.chosen, p.label) for p in out] == [("a", 0.8), ("d", pytest.approx(0.7))]
    assert counts == {"tie": 1, "swapped": 1, "soft label kept": 2}
    assert orient(pairs)[1]["soft label used as hard"] == 2


def test_label_reaches_the_loss_inputs_only_when_soft(tiny):
    _, tok = tiny
    enc = [encode_pair(tok, PreferencePair(PROMPT, "yes", "no", label=label), 32) for label in (0.9, 1.0)]
    assert [e.label for e in enc] == [0.9, 1.0]
    batch = collate_pairs(enc, pad_id=tok.pad_token_id)
    logps = torch.zeros(2)
    assert torch.allclose(dpo_inputs(logps, logps, batch, None, soft=True).labels, torch.tensor([0.9, 1.0]))
    assert dpo_inputs(logps, logps, batch, None).labels is None


def test_soft_labels_need_the_sigmoid_loss():
    with pytest.raises(ConfigError, match="soft_labels"):
        load_config(DPOConfig, None, ["soft_labels=true", "loss=ipo"])
    assert load_config(DPOConfig, None, ["soft_labels=true"]).soft_labels
