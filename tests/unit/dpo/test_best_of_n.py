"""Best-of-N pieces: choosing the best sample, chunking N samples per prompt, scoring in batches."""

import pytest
import torch

from rlhfkit.rollout import sample_groups
from rlhfkit.stages.best_of_n import BoNConfig, BoNSampling, pick_best, score_all


def test_pick_best_by_hand():
    assert pick_best([0.1, 0.7, 0.3], [True, True, True], only_finished=True) == 1
    assert pick_best([0.5, 0.9, 0.9], [True, True, True], only_finished=True) == 1  # first on ties
    assert pick_best([0.1, 0.7, 0.3], [True, False, True], only_finished=True) == 2  # 0.7 was cut off
    assert pick_best([0.1, 0.7, 0.3], [True, False, True], only_finished=False) == 1
    assert pick_best([0.1, 0.7], [False, False], only_finished=True) is None


class FakeBatch:
    def __init__(self, texts, finished):
        self.texts = texts
        self.finished = torch.tensor(finished)
        self.response_lengths = torch.tensor([len(t) for t in texts])

    def decode(self, tokenizer):
        return self.texts


class FakeEngine:
    """Answers prompt id-list p with text "<p[0]>:<seed>:<row>"; rows with odd seed are unfinished."""

    def __init__(self):
        self.calls = []

    def generate(self, prompt_ids, params):
        self.calls.append(([p[0] for p in prompt_ids], params.seed))
        texts = [f"{p[0]}:{params.seed}:{i}" for i, p in enumerate(prompt_ids)]
        return FakeBatch(texts, [params.seed % 2 == 0] * len(texts))


class FakeTokenizer:
    """No chat template: prompts arrive in rlhfkit's plain fallback form "User: <n>\nAssistant: "."""

    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(text.split("User: ", 1)[1].split("\n", 1)[0])]}


def test_samples_are_chunked_by_whole_prompt_groups():
    engine = FakeEngine()
    cfg = BoNConfig(reward="length", seed=10, sampling=BoNSampling(n=3, batch_size=7))
    groups, _ = sample_groups(engine, FakeTokenizer(), ["1", "2", "3", "4", "5"], cfg.sampling, cfg.seed)
    # 7 // 3 = 2 whole groups (6 sequences) per generate call, seeds 10, 11, 12
    assert engine.calls == [([1, 1, 1, 2, 2, 2], 10), ([3, 3, 3, 4, 4, 4], 11), ([5, 5, 5], 12)]
    texts, finished = groups[2]
    assert texts == ["3:11:0", "3:11:1", "3:11:2"] and finished == [False, False, False]
    assert groups[4] == (["5:12:0", "5:12:1", "5:12:2"], [True, True, True])


def test_more_samples_than_the_batch_split_one_prompt():
    engine = FakeEngine()
    cfg = BoNConfig(reward="length", sampling=BoNSampling(n=5, batch_size=2))
    groups, _ = sample_groups(engine, FakeTokenizer(), ["7"], cfg.sampling, cfg.seed)
    assert [len(c[0]) for c in engine.calls] == [2, 2, 1]
    assert len(groups[0][0]) == 5


def test_scores_come_back_per_prompt_in_order():
    calls = []

    def reward(prompts, responses):
        calls.append(len(responses))
        return torch.tensor([float(len(r)) for r in responses])

    from rlhfkit.rewards import load_reward

    groups = [(["a", "bb"], [True, True]), (["ccc", "dddd", "e"], [True, True, True])]
    assert score_all(load_reward(reward), ["p", "q"], groups, batch_size=2) == [[1.0, 2.0], [3.0, 4.0, 1.0]]
    assert calls == [2, 2, 1]


def test_a_reward_model_scores_each_prompt_once_for_all_its_samples(tmp_path):
    from rlhfkit.models import load_causal_lm
    from rlhfkit.models.reward import RewardModel, reward_model_from_causal_lm
    from rlhfkit.rewards import load_reward

    model, tok = load_causal_lm("tiny")
    RewardModel(reward_model_from_causal_lm(model), tok).save(tmp_path / "rm")
    reward = load_reward(str(tmp_path / "rm"))
    prompts = ["Name a colour.", "Say hi."]
    groups = [(["Red.", "Blue is a colour.", "No."], [True] * 3), (["Hi!"], [True])]
    got = score_all(reward, prompts, groups, batch_size=4)
    flat = reward([prompts[0]] * 3 + [prompts[1]], ["Red.", "Blue is a colour.", "No.", "Hi!"]).tolist()
    assert [len(g) for g in got] == [3, 1]
    assert got[0] + got[1] == pytest.approx(flat, abs=1e-4)


def test_reward_is_required():
    from rlhfkit.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="reward: required"):
        load_config(BoNConfig, None, [])
