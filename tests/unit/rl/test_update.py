"""The update loop's micro-batch weighting: accumulated micro-batches give the minibatch's gradient."""

import pytest
import torch

from rlhfkit.losses.ppo import grpo_policy_loss
from rlhfkit.rl.update import row_weights, run_epochs


class _Sched:
    def step(self):
        pass

    def get_last_lr(self):
        return [0.0]


def _gradient(loss_on, n_rows, weights, micro):
    """The gradient that run_epochs accumulates over one minibatch of all rows."""
    captured = {}

    class Opt:
        def zero_grad(self, set_to_none=True):
            pass

        def step(self):
            captured["g"] = W.grad.clone()

    W = torch.zeros(n_rows, 2, requires_grad=True)
    run_epochs(n_rows=n_rows, row_weights=weights, epochs=1, minibatch=n_rows, micro=micro,
               generator=torch.Generator().manual_seed(0), loss_on=lambda rows: loss_on(W, rows),
               optimizer=Opt(), scheduler=_Sched(), params=[W], max_grad_norm=0.0)
    return captured["g"]


def test_sequence_mean_with_a_dropped_response_does_not_depend_on_micro_batch_size():
    """Two responses of 2 tokens, the second dropped (missing_eos=drop: its mask is all 0).
    GRPO's sequence mean at ratio 1: L = -A * mean_t r_t over the kept response, so
    dL/dlogp = -A / 2 = -0.5 per token of response 0 (A = 1), whatever the micro-batch size."""
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])

    def loss_on(W, rows):
        loss, stats = grpo_policy_loss(W[rows], None, None, adv[rows], mask[rows], beta=0.0,
                                       reduction="sequence")
        return loss, stats

    weights = row_weights(mask, "sequence")
    expected = torch.tensor([[-0.5, -0.5], [0.0, 0.0]])
    for micro in (1, 2):
        torch.testing.assert_close(_gradient(loss_on, 2, weights, micro), expected, msg=f"micro={micro}")


def test_row_weights_by_hand():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert row_weights(mask, "token").tolist() == [2.0, 0.0, 1.0]
    assert row_weights(mask, "sequence").tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="reduction"):
        row_weights(mask, "batch")
