"""Experience plumbing: score shaping (hand-computed), row selection, deterministic prompt order
and minibatches, and gradient accumulation equal to one big minibatch."""

import math

import pytest
import torch

from rlhfkit.rl.experience import Experience, ScoreShaper, encode_prompt_set, micro_batches
from rlhfkit.rl.loop import describe_rl_batches, prompt_indices
from rlhfkit.rl.update import StatsMean, minibatch_order, run_epochs


def test_score_shaper_none_batch_and_clip():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert torch.equal(ScoreShaper("none")(x), x)
    # batch: mean 3, unbiased std sqrt(14/3)
    std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    expected = torch.tensor([-2.0, -1.0, 0.0, 3.0]) / std
    assert torch.allclose(ScoreShaper("batch")(x), expected, atol=1e-6)
    assert torch.equal(ScoreShaper("none", clip=2.5)(x), torch.tensor([1.0, 2.0, 2.5, 2.5]))


def test_score_shaper_running_statistics_and_state():
    shaper = ScoreShaper("running")
    first = shaper(torch.tensor([1.0, 3.0]))  # mean 2, unbiased var 2
    assert torch.allclose(first, torch.tensor([-1.0, 1.0]) / math.sqrt(2.0 + 1e-8))
    second = shaper(torch.tensor([5.0]))  # stats over 1, 3, 5: mean 3, var 4
    assert torch.allclose(second, torch.tensor([2.0 / math.sqrt(4.0 + 1e-8)]))
    clone = ScoreShaper("running")
    clone.load_state_dict(shaper.state_dict())
    assert clone.count == 3 and clone.mean == pytest.approx(3.0) and clone.m2 == pytest.approx(8.0)


def _exp(b=4, t=3):
    return Experience(
        prompt_ids=torch.arange(b * 2).view(b, 2), prompt_mask=torch.ones(b, 2, dtype=torch.long),
        response_ids=torch.arange(b * t).view(b, t), real_mask=torch.ones(b, t), mask=torch.ones(b, t),
        logprobs=torch.zeros(b, t), finished=torch.ones(b, dtype=torch.bool),
        raw_scores=torch.arange(b).float(), scores=torch.arange(b).float(),
        texts=[f"t{i}" for i in range(b)], prompts=[f"p{i}" for i in range(b)])


def test_experience_select_rows():
    part = _exp().select([3, 1])
    assert part.raw_scores.tolist() == [3.0, 1.0]
    assert part.response_ids.tolist() == [[9, 10, 11], [3, 4, 5]]
    assert part.texts == ["t3", "t1"] and part.prompts == ["p3", "p1"]
    assert part.values is None and len(part) == 2


def test_prompt_indices_cover_each_epoch_and_are_deterministic():
    n, per = 10, 4
    seen = [prompt_indices(n, step, per, seed=1) for step in range(5)]  # 20 = two epochs
    flat = [i for batch in seen for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert seen == [prompt_indices(n, step, per, seed=1) for step in range(5)]
    assert seen != [prompt_indices(n, step, per, seed=2) for step in range(5)]
    assert len(prompt_indices(3, 0, 5, seed=0)) == 5  # a batch larger than the set wraps


def test_minibatch_order_is_epochs_of_permutations():
    order = minibatch_order(6, epochs=2, minibatch=3, generator=torch.Generator().manual_seed(0))
    assert len(order) == 4 and all(len(mb) == 3 for mb in order)
    assert sorted(order[0] + order[1]) == list(range(6)) and sorted(order[2] + order[3]) == list(range(6))
    assert micro_batches(5, 2) == [[0, 1], [2, 3], [4]]


class _Sched:
    def step(self):
        pass

    def get_last_lr(self):
        return [0.1]


def test_accumulated_micro_batches_equal_one_minibatch():
    """Token-weighted micro-batch losses accumulate to exactly the minibatch's token-mean loss."""
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]).float()
    weights = mask.sum(1)

    def grads(micro):
        w = torch.zeros(5, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.0)

        def loss_on(rows):
            per_token = (x[rows] * w) ** 2  # any function of the parameters
            m = mask[rows]
            return (per_token * m).sum() / m.sum(), {"n": float(m.sum())}

        captured = {}
        orig_step = opt.step

        def step():
            captured["g"] = w.grad.clone()
            orig_step()

        opt.step = step
        with torch.no_grad():
            w.fill_(0.5)
        run_epochs(n_rows=4, row_weights=weights, epochs=1, minibatch=4, micro=micro,
                   generator=torch.Generator().manual_seed(0), loss_on=loss_on, optimizer=opt,
                   scheduler=_Sched(), params=[w], max_grad_norm=0.0)
        return captured["g"]

    assert torch.allclose(grads(1), grads(4), atol=1e-6)
    assert torch.allclose(grads(3), grads(4), atol=1e-6)


def test_stats_mean_skips_nan():
    s = StatsMean()
    s.add({"a": 1.0, "b": float("nan")})
    s.add({"a": 3.0, "b": 2.0})
    assert s.mean() == {"a": 2.0, "b": 2.0}


def test_encode_prompt_set_drops_long_prompts(tiny):
    from rlhfkit.data.records import Message

    _, tok = tiny
    short = (Message("user", "hi"),)
    long = (Message("user", "word " * 200),)
    kept, ids, dropped = encode_prompt_set(tok, [short, long, short], max_length=64)
    assert kept == [short, short] and dropped == 1 and len(ids[0]) <= 64


def test_batch_vocabulary_line():
    line = describe_rl_batches(prompts_per_batch=16, samples_per_prompt=4, micro=8, accum=2, epochs=2,
                               iterations=10, n_prompts=100)
    assert "16 x samples_per_prompt=4 = 64 responses" in line
    assert "= 16 responses per optimizer step" in line
    assert "epochs=2 -> 8 optimizer steps per iteration" in line and "80 optimizer steps" in line


def test_findings_log_is_trimmed_like_the_metrics(tmp_path):
    import json

    from rlhfkit.rl.loop import _trim_findings

    path = tmp_path / "hacking.jsonl"
    path.write_text("".join(json.dumps({"step": s, "name": "x"}) + "\n" for s in (1, 2, 3)) + "{torn")
    _trim_findings(path, 2)  # resumed after 2 iterations
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    _trim_findings(path, None)  # a fresh run
    assert path.read_text() == ""
    _trim_findings(tmp_path / "absent.jsonl", None)
    assert not (tmp_path / "absent.jsonl").exists()
