"""Reward model: construction, last-token reading, prefix sharing == plain forward, save/load
interop with Hugging Face, normalisation and ensembles."""

import math

import pytest
import torch

from rlhfkit.data.collate import collate_plain, collate_shared_prefix
from rlhfkit.models.reward import (
    RewardEnsemble,
    RewardInfo,
    RewardModel,
    head_init_std,
    last_token_index,
    load_reward_model,
    plain_rewards,
    reduce_members,
    reward_model_from_causal_lm,
    reward_summary,
    sequence_rewards,
    shared_prefix_rewards,
)

GROUPS = [
    ([5, 6, 7, 8], [[10, 11, 2], [12, 2]]),
    ([9, 3], [[4, 4, 4, 4, 2], [7, 2], [8, 8, 2]]),
    ([1], [[3, 2]]),
    ([20, 21, 22, 23, 24, 25, 26], [[30, 2], [31, 32, 33, 2]]),
]


@pytest.fixture(scope="module")
def rm():
    from rlhfkit.models import load_causal_lm

    lm, tok = load_causal_lm("tiny")
    model = reward_model_from_causal_lm(lm, seed=0)
    model.eval()
    return model, tok


def test_built_from_the_causal_lm_without_lm_head(tiny):
    from rlhfkit.models import load_causal_lm

    lm, _ = load_causal_lm("tiny")
    backbone = lm.model
    model = reward_model_from_causal_lm(lm, seed=3)
    assert model.model is backbone  # moved, not copied
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1 and model.config.pad_token_id == 0
    assert not any("lm_head" in name for name, _ in model.named_parameters())
    assert model.score.bias is None and tuple(model.score.weight.shape) == (1, 64)
    assert head_init_std(64) == pytest.approx(1 / math.sqrt(65))
    # 64 draws of N(0, 1/sqrt(65) = 0.124): the sample std lies well inside [0.08, 0.17]
    assert 0.08 < float(model.score.weight.detach().std()) < 0.17
    same = reward_model_from_causal_lm(load_causal_lm("tiny")[0], seed=3)
    assert torch.equal(same.score.weight, model.score.weight)  # seeded


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_index(right).tolist() == [2, 1]
    assert last_token_index(left).tolist() == [3, 3]


def test_left_and_right_padding_give_the_same_rewards(rm):
    from rlhfkit.data.collate import pad

    model, _ = rm
    seqs = [[5, 6, 7, 8, 2], [9, 2], [1, 3, 3, 2]]
    alone = torch.stack([sequence_rewards(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))[0]
                         for s in seqs])
    with torch.no_grad():
        for side in ("left", "right"):
            ids = pad(seqs, 0, side=side)
            mask = pad([[1] * len(s) for s in seqs], 0, side=side)
            got = sequence_rewards(model, ids, mask)
            assert torch.allclose(got, alone, atol=1e-5), side


def test_shared_prefix_equals_plain_forward(rm):
    model, _ = rm
    shared = collate_shared_prefix(GROUPS, 0)
    plain = collate_plain(GROUPS, 0)
    assert shared["valid"].tolist() == plain["valid"].tolist()
    assert shared["tokens"] < plain["tokens"]  # each prompt once
    with torch.no_grad():
        a = shared_prefix_rewards(model, shared)
        b = plain_rewards(model, plain)
    assert a.shape == (4, 3)
    assert torch.allclose(a, b, atol=1e-4)
    assert a[2, 1:].abs().sum() == 0  # invalid slots are 0


def test_shared_prefix_gradients_equal_plain(rm):
    model, _ = rm
    grads = []
    for collate, fn in ((collate_shared_prefix, shared_prefix_rewards), (collate_plain, plain_rewards)):
        model.zero_grad()
        rewards = fn(model, collate(GROUPS, 0))
        (rewards[:, 0] - rewards[:, 1]).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-4), name
    model.zero_grad()


def test_shared_prefix_layout():
    batch = collate_shared_prefix([([7, 8], [[1, 2], [3, 4, 5]])], pad_id=0)
    assert batch["input_ids"].tolist() == [[7, 8, 1, 2, 3, 4, 5]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3, 4]]  # each response restarts after P
    assert batch["ends"].tolist() == [[3, 6]]
    allowed = (batch["attention_mask"][0, 0] == 0).int()
    assert allowed[4].tolist() == [1, 1, 0, 0, 1, 0, 0]  # R2's first token: prompt + itself, not R1
    assert allowed[3].tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_reward_summary_and_normalisation_by_hand():
    s = reward_summary([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(1.25))  # population std
    assert (s["min"], s["max"], s["p50"]) == (1.0, 4.0, 2.5)
    info = RewardInfo(normalization={"mean": 2.5, "std": 0.5}, calibration=s)
    rm = RewardModel(model=None, tokenizer=None, info=info)
    cal = rm.calibration_range
    assert cal["units"] == "normalized"
    assert cal["min"] == pytest.approx(-3.0) and cal["max"] == pytest.approx(3.0)  # (1-2.5)/0.5, (4-2.5)/0.5
    raw = RewardModel(model=None, tokenizer=None, info=RewardInfo(calibration=s)).calibration_range
    assert raw["units"] == "raw" and raw["max"] == 4.0


def test_score_is_normalised_with_stored_stats(rm):
    model, tok = rm
    raw_model = RewardModel(model, tok, RewardInfo(max_length=64))
    prompts = ["Hi there", ("x",)[0]]
    responses = ["Hello!", "A longer answer here."]
    raw = raw_model.score(prompts, responses)
    normed = RewardModel(model, tok, RewardInfo(max_length=64, normalization={"mean": 0.25, "std": 2.0}))
    assert torch.allclose(normed.score(prompts, responses), (raw - 0.25) / 2.0, atol=1e-6)
    assert torch.allclose(normed.score(prompts, responses, normalize=False), raw)


def test_saved_model_loads_in_hf_and_scores_the_same(rm, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlhfkit.data.collate import pad
    from rlhfkit.data.tokenize import encode_example

    model, tok = rm
    info = RewardInfo(max_length=128, normalization={"mean": 0.1, "std": 2.0})
    folder = RewardModel(model, tok, info).save(tmp_path / "rm")
    hf = AutoModelForSequenceClassification.from_pretrained(folder)
    loaded = load_reward_model(folder)
    assert loaded.normalization == {"mean": 0.1, "std": 2.0}
    from rlhfkit.data.records import Message

    prompts = [(Message("user", "How are you?"),), (Message("user", "Name a colour."),)]
    responses = ["Fine, thanks.", "Blue is a colour that many people like."]
    seqs = [encode_example(tok, p, r, 128).input_ids for p, r in zip(prompts, responses)]
    ids, mask = pad(seqs, tok.pad_token_id), pad([[1] * len(s) for s in seqs], 0)  # right padding
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits[:, 0]
    ours = loaded.score(prompts, responses, normalize=False)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(loaded.score_ids(ids, mask, normalize=False), theirs, atol=1e-5)


def test_reward_model_trained_elsewhere_loads(tmp_path, tiny):
    from transformers import AutoModelForSequenceClassification

    lm, tok = tiny
    config = lm.config.__class__(**lm.config.to_dict())
    config.num_labels = 1
    config.architectures = ["LlamaForSequenceClassification"]
    torch.manual_seed(1)
    other = AutoModelForSequenceClassification.from_config(config)
    other.save_pretrained(tmp_path / "ext")
    tok.save_pretrained(tmp_path / "ext")
    loaded = load_reward_model(tmp_path / "ext")
    assert loaded.normalization is None and loaded.calibration_range is None
    scores = loaded.score(["Hello?"], ["Hi."])
    assert scores.shape == (1,) and torch.isfinite(scores).all()


def test_causal_lm_folder_is_not_a_reward_model():
    from rlhfkit.models.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match="not a reward model"):
        load_reward_model("tiny")


def test_reduce_members_by_hand():
    scores = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # [M=2, B=2]
    assert reduce_members(scores, "mean").tolist() == [2.0, 4.0]
    assert reduce_members(scores, "min").tolist() == [1.0, 2.0]
    # population std over members: [1, 2]; mean - 0.5 * std = [1.5, 3.0]
    assert reduce_members(scores, "mean_minus_std", c=0.5).tolist() == [1.5, 3.0]
    with pytest.raises(ValueError, match="reduce"):
        reduce_members(scores, "max")


def test_ensemble_save_load_and_reduce(tmp_path):
    from rlhfkit.models import load_causal_lm

    members = []
    for seed, (mean, std) in enumerate([(0.0, 1.0), (0.5, 2.0)]):
        lm, tok = load_causal_lm("tiny")
        members.append(RewardModel(reward_model_from_causal_lm(lm, seed=seed), tok,
                                   RewardInfo(max_length=64, normalization={"mean": mean, "std": std})))
    calibration = reward_summary([-1.0, 0.0, 1.0])
    folder = RewardEnsemble(members, calibration).save(tmp_path / "ens")
    ens = load_reward_model(folder)
    assert isinstance(ens, RewardEnsemble) and len(ens.members) == 2
    prompts, responses = ["Q one?", "Q two?", "Q three?"], ["A.", "B b.", "C c c."]
    per = ens.member_scores(prompts, responses)
    assert per.shape == (2, 3)
    raw = torch.stack([m.score(prompts, responses, normalize=False) for m in members])
    assert torch.allclose(per[1], (raw[1] - 0.5) / 2.0, atol=1e-5)  # each member normalised by its stats
    for how in ("mean", "min", "mean_minus_std"):
        assert torch.allclose(ens.score(prompts, responses, reduce=how, c=2.0),
                              reduce_members(per, how, 2.0), atol=1e-6)
    assert ens.calibration_range["min"] == -1.0 and ens.calibration_range["units"] == "normalized"
    assert ens.tokenizer is ens.members[0].tokenizer


def test_score_candidates_shares_the_prompt_and_matches_score(rm):
    model, tok = rm
    reward = RewardModel(model, tok, RewardInfo(max_length=128, normalization={"mean": 0.5, "std": 4.0}))
    prompts = ["Name a fruit.", "How do I boil an egg?"]
    candidates = [["Apple.", "A banana is a fruit.", "No."], ["Boil it for eight minutes."]]
    got = reward.score_candidates(prompts, candidates)
    assert [tuple(x.shape) for x in got] == [(3,), (1,)]
    for prompt, cands, scores in zip(prompts, candidates, got):
        expected = reward.score([prompt] * len(cands), cands)
        assert torch.allclose(scores, expected, atol=1e-4)
