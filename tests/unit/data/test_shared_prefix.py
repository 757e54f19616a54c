"""data/collate.py shared_prefix_rows: the one layout behind the reward model's K-response rows
and DPO's packed pairs, checked against hand-built expectations."""

import pytest
import torch

from rlhfkit.data.collate import additive_mask, shared_prefix_rows


def test_rows_hand_computed():
    rows = shared_prefix_rows([([7, 8], [[1, 2], [3]]), ([9], [[4]])], pad_id=0)
    assert rows.input_ids.tolist() == [[7, 8, 1, 2, 3], [9, 4, 0, 0, 0]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 0, 0, 0]]
    assert rows.starts == [[2, 4], [1]]
    expected = torch.tensor([[1, 0, 0, 0, 0],   # prompt: causal
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0],   # response 1: prompt + itself
                             [1, 1, 1, 1, 0],
                             [1, 1, 0, 0, 1]],  # response 2: prompt + itself, never response 1
                            dtype=torch.bool)
    assert torch.equal(rows.allowed[0, 0], expected)
    pad_rows = rows.allowed[1, 0, 2:, :]  # padding sees only itself
    assert torch.equal(pad_rows, torch.tensor([[0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]],
                                              dtype=torch.bool))


def test_additive_mask_and_empty_response():
    mask = additive_mask(torch.tensor([[[[True, False]]]]), torch.float32)
    assert mask.tolist() == [[[[0.0, torch.finfo(torch.float32).min]]]]
    with pytest.raises(ValueError, match="group 0: response 1 is empty"):
        shared_prefix_rows([([1], [[2], []])], pad_id=0)
