"""The reward stage's wiring: each objective on hand-computed rewards, grouping, encoding, metrics,
the judge, batching."""

import math

import pytest
import torch

from rlhfkit.data.records import DataError, Message, PreferencePair, Ranking
from rlhfkit.stages.reward_config import Objective, RewardConfig
from rlhfkit.stages.reward_eval import expected_calibration_error, group_metrics, pair_metrics
from rlhfkit.stages.reward_groups import (
    Group,
    encode_group,
    expected_rating,
    group_losses,
    listwise_groups,
    make_batches,
    pair_groups,
    ranking_groups,
    target_scaler,
)

P = (Message("user", "q"),)


def g(kind, n, **kw):
    return Group(kind, [1], [[2]] * n, **kw)


def losses_of(rewards, groups, **objective):
    return group_losses(torch.tensor(rewards), groups, Objective(**objective))


def test_bradley_terry_with_margin_by_hand():
    losses, stats = losses_of([[1.0, 0.0], [0.0, 2.0]], [g("pair", 2), g("pair", 2, margin=0.5)])
    # (-log sig(1) - log sig(-2 - 0.5)) / 2 = (0.3132617 + 2.5788897) / 2
    assert losses["compare"].item() == pytest.approx(1.4460757109053861)
    assert stats["pair/accuracy"].item() == 0.5


def test_soft_and_tie_labels_use_bce():
    losses, _ = losses_of([[1.0, 0.0]], [g("pair", 2, label=0.5)], pairwise="bce")
    # 0.5 * -log sig(1) + 0.5 * -log sig(-1)
    assert losses["compare"].item() == pytest.approx(0.8132616875182228)


def test_listwise_one_preferred_several_rejected():
    losses, _ = losses_of([[2.0, 0.0, 1.0]], [g("listwise", 3)])
    # -(2 - log(e^2 + e^0 + e^1)) = log(1 + e^-2 + e^-1)
    assert losses["compare"].item() == pytest.approx(0.4076059644443804)


def test_plackett_luce_for_rankings_with_padding():
    # row 0: ranking of 3 (best first); row 1: a ranking of 2, padded to K=3
    losses, stats = losses_of([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [g("ranking", 3), g("ranking", 2)])
    # row 0: log(1+e^-2+e^-1) + log(1+e^-1) = 0.7208677; row 1: log(1+e^-1) = 0.3132617
    assert losses["compare"].item() == pytest.approx((0.7208676519626033 + 0.31326168751822286) / 2)
    assert stats["ranking/accuracy"].item() == 1.0


def test_compare_is_row_weighted_over_kinds():
    losses, _ = losses_of([[1.0, 0.0, 0.0], [2.0, 0.0, 1.0]], [g("pair", 2), g("listwise", 3)])
    assert losses["compare"].item() == pytest.approx((0.31326168751822286 + 0.4076059644443804) / 2)


def test_mixed_objective_weights():
    from rlhfkit.losses.reward import mixed_reward_loss
    from rlhfkit.stages.reward_config import MixWeights
    from rlhfkit.stages.reward_groups import weights_of

    groups = [g("pair", 2), g("score", 1, target=1.5), g("language", 1, target=-1.0)]
    objective = Objective(weights=MixWeights(score=0.5, compare=2.0, language=3.0))
    losses, _ = group_losses(torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 0.0]]), groups, objective)
    assert losses["score"].item() == pytest.approx(1.0)  # (0.5 - 1.5)^2
    assert losses["language"].item() == pytest.approx(1.0)  # (0 - (-1))^2
    total, _ = mixed_reward_loss(losses, weights_of(objective))
    # 2 * 0.3132617 + 0.5 * 1 + 3 * 1
    assert total.item() == pytest.approx(2 * 0.31326168751822286 + 0.5 + 3.0)


def test_score_targets_standardised_per_source():
    scale = target_scaler([1.0, 3.0, 5.0], "standardize")  # mean 3, population std sqrt(8/3)
    assert [scale(v) for v in (1.0, 3.0, 5.0)] == pytest.approx([-1.224744871391589, 0.0, 1.224744871391589])
    assert target_scaler([1.0, 3.0], "raw")(7) == 7.0


def test_listwise_groups_merge_pairs_with_the_same_chosen(tiny):
    _, tok = tiny
    pairs = [PreferencePair(P, "good", "bad"), PreferencePair(P, "good", "worse"),
             PreferencePair(P, "other", "bad")]
    groups = listwise_groups(pairs, tok, RewardConfig())
    assert [len(x.responses) for x in groups] == [3, 2]
    assert groups[0].kind == "listwise"


def test_bradley_terry_refuses_tie_labels_naming_the_record(tiny):
    _, tok = tiny
    pair = PreferencePair(P, "a", "b", label=0.5, source="ties.jsonl:7")
    with pytest.raises(DataError, match="ties.jsonl:7: label"):
        pair_groups([pair], tok, RewardConfig())
    cfg = RewardConfig()
    cfg.objective.pairwise = "bce"
    assert pair_groups([pair], tok, cfg)[0].label == 0.5


def test_rankings_as_plackett_luce_rows_or_expanded_pairs(tiny):
    _, tok = tiny
    ranking = Ranking(P, ("a", "b", "c"), (2, 0, 1))
    cfg = RewardConfig()
    (row,) = ranking_groups([ranking], tok, cfg)
    assert row.kind == "ranking"
    assert [tok.decode(r[:-1]) for r in row.responses] == ["c", "a", "b"]  # best first
    cfg.objective.ranking = "pairs"
    assert len(ranking_groups([ranking], tok, cfg)) == 3


def test_encode_group_fits_every_response(tiny):
    _, tok = tiny
    prompt = (Message("user", "word " * 200),)
    prompt_ids, responses, cut = encode_group(tok, prompt, ["short", "a much longer response " * 5], 64)
    assert cut
    assert all(len(prompt_ids) + len(r) <= 64 for r in responses)
    assert responses[0][-1] == tok.eos_token_id  # the short one keeps its EOS


def test_pair_metrics_by_hand():
    m = pair_metrics(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0]), torch.ones(3))
    assert m["accuracy"] == pytest.approx(1 / 3) and m["tie_rate"] == pytest.approx(1 / 3)
    assert m["margin_mean"] == pytest.approx(0.0)
    assert m["loss"] == pytest.approx(0.7732235185321303)  # (log(1+e^-1) + log 2 + log(1+e)) / 3


def test_expected_calibration_error_by_hand():
    # p = sigmoid(2, -1, 0.5, 3) = .8808, .2689, .6225, .9526; confidences .8808, .7311, .6225, .9526;
    # correct: yes, no, yes, yes; one per bin -> mean |acc - conf|
    ece = expected_calibration_error(torch.tensor([2.0, -1.0, 0.5, 3.0]), torch.ones(4))
    assert ece == pytest.approx((0.11920292 + 0.73105858 + 0.37754067 + 0.04742587) / 4)
    # two in one bin: p = .8808 and .8808 (one wrong label): |0.5 - 0.8808|
    assert expected_calibration_error(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 0.0])) == pytest.approx(
        0.3807970779778823)


def test_group_metrics_count_every_stated_comparison():
    groups = [g("pair", 2), g("ranking", 3), g("score", 1, target=0.0)]
    rewards = [[1.0, 0.0], [3.0, 1.0, 2.0], [0.5]]
    m = group_metrics(groups, rewards, Objective())
    # pair: right; ranking pairs (0>1 right, 0>2 right, 1>2 wrong) -> 3 of 4
    assert m["pairs"] == 4 and m["accuracy"] == pytest.approx(0.75)
    assert m["score/loss"] == pytest.approx(0.25)


def test_expected_rating_reads_the_digit_distribution():
    assert expected_rating(torch.zeros(1, 7)).item() == pytest.approx(4.0)
    peaked = torch.full((1, 7), -50.0)
    peaked[0, 6] = 0.0
    assert expected_rating(peaked).item() == pytest.approx(7.0, abs=1e-6)
    logits = torch.log(torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0]]) + 1e-30)
    assert expected_rating(logits).item() == pytest.approx(1.5)


def test_judge_scores_language_feedback_with_a_tiny_judge():
    from rlhfkit.data.sources import load
    from rlhfkit.stages.reward_groups import judge_language_feedback

    from rlhfkit.data.tokenize import encode_prompt
    from rlhfkit.models import load_causal_lm
    from rlhfkit.stages.reward_groups import judge_prompt

    records = load("demo:language", "language").records[:3]
    scores = judge_language_feedback(records, "tiny", "cpu", batch_size=2)  # batched, left-padded
    # the same ratings one record at a time, without padding: E[d] = sum_d d * softmax(z_"1".."7")_d
    # of the next-token logits after the judge prompt
    model, tok = load_causal_lm("tiny")
    digits = tok.convert_tokens_to_ids(list("1234567"))
    expected = []
    with torch.no_grad():
        for record in records:
            ids = torch.tensor([encode_prompt(tok, judge_prompt(record))])
            probs = torch.softmax(model(ids).logits[0, -1, digits], dim=-1)
            expected.append(sum((d + 1) * float(p) for d, p in enumerate(probs)))
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(round(x, 5) for x in expected)) == 3  # the records are told apart


def test_batches_are_deterministic_and_both_layouts_agree(tiny):
    from rlhfkit.data.sources import load
    from rlhfkit.models.reward import group_rewards, reward_model_from_causal_lm
    from rlhfkit.models import load_causal_lm

    _, tok = tiny
    cfg = RewardConfig()
    groups = pair_groups(load("demo:pairs", "pairs").records[:12], tok, cfg)
    a = [[id(x) for x in b.groups] for b in make_batches(groups, cfg, 0, epoch=1)]
    b = [[id(x) for x in b.groups] for b in make_batches(groups, cfg, 0, epoch=1)]
    assert a == b and sorted(i for row in a for i in row) == sorted(id(x) for x in groups)
    model = reward_model_from_causal_lm(load_causal_lm("tiny")[0]).eval()
    shared = make_batches(groups, cfg, 0, epoch=0, shuffle=False)
    cfg.prefix_sharing = False
    plain = make_batches(groups, cfg, 0, epoch=0, shuffle=False)
    with torch.no_grad():
        for s, p in zip(shared, plain):
            assert torch.allclose(group_rewards(model, s.tensors()), group_rewards(model, p.tensors()), atol=1e-4)
            # pairs in a bucket have similar lengths: little padding
            t = s.tensors()
            assert t["tokens"] >= 0.5 * t["input_ids"].numel()


def test_freeze_lower_layers():
    from rlhfkit.models import load_causal_lm
    from rlhfkit.models.reward import reward_model_from_causal_lm
    from rlhfkit.stages.reward import freeze_lower_layers

    model = reward_model_from_causal_lm(load_causal_lm("tiny")[0])
    freeze_lower_layers(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("model.embed_tokens", "model.layers.0.")) for n in trainable)
    assert any(n.startswith("model.layers.1.") for n in trainable) and "score.weight" in trainable
    with pytest.raises(ValueError, match="only 2 layers"):  # a ConfigError
        freeze_lower_layers(model, 3)


def test_negative_freeze_layers_keep_the_top_layers_trainable():
    from rlhfkit.models import load_causal_lm
    from rlhfkit.models.reward import reward_model_from_causal_lm
    from rlhfkit.stages.reward import frozen_layer_count

    model = reward_model_from_causal_lm(load_causal_lm("tiny")[0])  # 2 layers
    assert [frozen_layer_count(model, n) for n in (-4, -2, -1, 0, 1, 2)] == [0, 0, 1, 0, 1, 2]
    with pytest.raises(ValueError, match="only 2 layers"):
        frozen_layer_count(model, 3)


def test_config_validation():
    from rlhfkit.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="dropout"):
        load_config(RewardConfig, None, ["dropout=1.5"])
    with pytest.raises(ConfigError, match="objective.pairwise"):
        load_config(RewardConfig, None, ["objective.pairwise=hinge"])
    cfg = load_config(RewardConfig, None, ["objective.weights.score=0.25"])
    assert cfg.objective.weights.score == 0.25 and math.isclose(cfg.objective.weights.compare, 1.0)


def test_frozen_layer_cache_gives_the_same_rewards_and_gradients(tiny):
    from rlhfkit.data.sources import load
    from rlhfkit.models import load_causal_lm
    from rlhfkit.models.reward import group_rewards, reward_model_from_causal_lm
    from rlhfkit.models.frozen_cache import FrozenCache
    from rlhfkit.stages.reward import freeze_lower_layers

    _, tok = tiny
    cfg = RewardConfig()
    groups = pair_groups(load("demo:pairs", "pairs").records[:10], tok, cfg)
    model = reward_model_from_causal_lm(load_causal_lm("tiny")[0])
    freeze_lower_layers(model, 1)
    cache = FrozenCache(1, tok.pad_token_id, "cpu").bind(model)
    for epoch in (0, 1):  # epoch 0 fills the cache, epoch 1 reads it with other batch-mates
        plain = make_batches(groups, cfg, 0, epoch)
        cached = make_batches(groups, cfg, 0, epoch, cache=cache)
        for p, c in zip(plain, cached):
            grads = []
            for batch in (p, c):
                model.zero_grad()
                rewards = group_rewards(model, batch.tensors())
                (rewards[:, 0] - rewards[:, 1]).sum().backward()
                grads.append((rewards.detach(), [q.grad.clone() for q in model.parameters() if q.requires_grad]))
            assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
            for a, b in zip(grads[0][1], grads[1][1]):
                assert torch.allclose(a, b, atol=1e-4)
    assert len(cache.store) == len(groups)
