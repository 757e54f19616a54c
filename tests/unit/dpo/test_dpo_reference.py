"""DPO with a separate reference model (``reference=``): its log-probs, not the starting weights',
are the reference (rlhfkit rounds keeps the SFT model as the reference of a later round)."""

import copy

import torch

from rlhfkit.stages.dpo import DPOConfig, EncodedPair, fingerprint, prepare_reference, reference_logps


def test_reference_log_probs_come_from_the_reference_model(tiny, tmp_path):
    model, _ = tiny
    gen = torch.Generator().manual_seed(1)
    pairs = [EncodedPair(*(torch.randint(3, 5000, (n,), generator=gen).tolist() for n in shape))
             for shape in ((6, 4, 5), (3, 7, 2))]
    policy = copy.deepcopy(model)  # policy r-1: moved away from the SFT model
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    cfg = DPOConfig(model="tiny", reference="tiny")
    tensors, reused, _ = prepare_reference(policy, cfg, pairs, [], 0, tmp_path, "cpu")
    assert not reused
    assert torch.allclose(tensors["train"], reference_logps(model, pairs, 0, 2), atol=1e-5)
    assert not torch.allclose(tensors["train"], reference_logps(policy, pairs, 0, 2), atol=1e-3)
    # the cache key names the reference, so a run without one does not reuse these log-probs
    assert fingerprint(cfg, pairs, []) != fingerprint(DPOConfig(model="default"), pairs, [])
