"""train/ref_cache.py: the reference log-prob cache any reference-based loss uses (DPO today)."""

import torch

from rlhfkit.train.ref_cache import cached_reference, compute_reference_logps, fingerprint


def test_reference_cache_is_reused_for_the_same_data_and_recomputed_otherwise(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"train": torch.tensor([[-1.0, -2.0]]), "dev": torch.zeros((0, 2))}

    path = tmp_path / "reference_logps.pt"
    first, reused = cached_reference(path, "key-a", compute)
    assert not reused and len(calls) == 1 and path.exists()
    again, reused = cached_reference(path, "key-a", compute)
    assert reused and len(calls) == 1 and torch.equal(again["train"], first["train"])
    _, reused = cached_reference(path, "key-b", compute)
    assert not reused and len(calls) == 2


def test_fingerprint_changes_with_every_token_and_the_dtype():
    parts = [[([1, 2], [3], [4])], []]
    key = fingerprint("tiny", "float32", parts)
    assert key == fingerprint("tiny", "float32", [[([1, 2], [3], [4])], []])
    assert key != fingerprint("tiny", "float32", [[([1, 2], [3], [5])], []])
    assert key != fingerprint("tiny", "bfloat16", parts)
    assert key != fingerprint("tiny", "float32", [[], [([1, 2], [3], [4])]])  # which part matters


def test_compute_places_rows_by_index_in_eval_mode_without_grad():
    model = torch.nn.Linear(1, 1)
    model.train()
    seen = []

    def logps(m, batch):
        seen.append((m.training, torch.is_grad_enabled()))
        x = batch["x"]
        return -x, -2 * x

    batches = [{"index": torch.tensor([2, 0]), "x": torch.tensor([3.0, 1.0])},
               {"index": torch.tensor([1]), "x": torch.tensor([2.0])}]
    out = compute_reference_logps(model, batches, logps, n=3, columns=2)
    assert out.tolist() == [[-1.0, -2.0], [-2.0, -4.0], [-3.0, -6.0]]
    assert seen == [(False, False), (False, False)] and model.training  # mode restored
    assert compute_reference_logps(model, [], logps, n=0, columns=2).shape == (0, 2)


def test_load_or_compute_times_and_reports_once(tmp_path, caplog):
    import logging

    from rlhfkit.train.ref_cache import REFERENCE_FILE, load_or_compute

    def compute():
        return {"train": torch.ones((2, 2))}

    with caplog.at_level(logging.INFO, logger="rlhfkit"):
        tensors, reused, seconds = load_or_compute(tmp_path, "k", compute)
        assert not reused and seconds >= 0 and (tmp_path / REFERENCE_FILE).exists()
        again, reused, seconds = load_or_compute(tmp_path, "k", compute)
    assert reused and seconds == 0.0 and torch.equal(again["train"], tensors["train"])
    assert "computed in" in caplog.text and "reused from" in caplog.text
