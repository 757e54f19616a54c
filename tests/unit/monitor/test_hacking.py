"""Reward-hacking detectors: hand-computed statistics, each detector firing (and not firing), and
the monitor's actions (warn, penalty, stop) and cross-step state."""

import logging

import pytest

from rlhfkit.monitor.hacking import (
    Finding,
    HackingConfig,
    HackingMonitor,
    RewardHackingStop,
    detect_kl_spike,
    detect_length_blowup,
    detect_mode_collapse,
    detect_repetition,
    detect_reward_range,
    detect_special_chars,
    distinct_n,
    longest_special_run,
    repeated_ngram_share,
    unique_token_ratio,
)

# ------------------------------------------------------------------------------------------------
# statistics


def test_unique_token_ratio():
    assert unique_token_ratio([1, 2, 2, 3]) == 3 / 4
    assert unique_token_ratio([5, 5, 5, 5, 5]) == 1 / 5
    assert unique_token_ratio([]) == 1.0


def test_repeated_ngram_share():
    # [1,2,3,1,2,3,1]: trigrams 123 231 312 123 231 -> 3 unique of 5 -> 2/5 repeated
    assert repeated_ngram_share([1, 2, 3, 1, 2, 3, 1], 3) == pytest.approx(2 / 5)
    assert repeated_ngram_share([1, 2, 3, 4], 3) == 0.0
    assert repeated_ngram_share([1, 2], 3) == 0.0  # no trigram at all


def test_distinct_n_across_batch():
    # bigrams: (1,2),(2,3) | (1,2),(2,3) | (4,5) -> 3 unique of 5
    assert distinct_n([[1, 2, 3], [1, 2, 3], [4, 5]], 2) == pytest.approx(3 / 5)
    assert distinct_n([[1], [2]], 2) == 1.0


def test_longest_special_run():
    assert longest_special_run("hello!!!! world") == 4
    assert longest_special_run("a.b.c") == 1
    assert longest_special_run("ok ?!?!") == 1  # alternating characters are not one run
    assert longest_special_run("plain words 123") == 0
    assert longest_special_run("~~~~~~~~~~") == 10


# ------------------------------------------------------------------------------------------------
# detectors


def test_length_blowup():
    texts = ["a", "b", "c"]
    assert detect_length_blowup([10, 12, 14], baseline=10.0, ratio=2.0, texts=texts) is None
    f = detect_length_blowup([10, 30, 50], baseline=10.0, ratio=2.0, texts=texts)
    assert f.name == "length_blowup"
    assert f.value == pytest.approx(30.0) and f.threshold == pytest.approx(20.0)
    assert f.flagged == [2, 1]  # longest first; only responses over the limit
    assert f.examples == ["c", "b"]
    assert detect_length_blowup([10], baseline=None, ratio=2.0, texts=["a"]) is None


def test_repetition_flags_low_unique_ratio_and_repeated_ngrams():
    cfg = HackingConfig(min_tokens=4, min_unique_ratio=0.5, max_repeated_ngrams=0.5, ngram=2)
    varied = [1, 2, 3, 4, 5, 6]
    looping = [7, 8, 7, 8, 7, 8, 7, 8]  # unique 2/8 = 0.25 < 0.5
    short = [9, 9]  # below min_tokens: not checked
    f = detect_repetition([varied, looping, short], ["v", "loop", "s"], cfg)
    assert f.name == "repetition" and f.flagged == [1]
    assert f.value == pytest.approx(0.25)
    assert f.examples == ["loop"]
    assert detect_repetition([varied, short], ["v", "s"], cfg) is None


def test_mode_collapse():
    same = [[1, 2, 3]] * 4  # 8 bigrams, 2 unique -> 0.25
    f = detect_mode_collapse(same, ["x"] * 4, min_distinct=0.3)
    assert f.name == "mode_collapse" and f.value == pytest.approx(0.25)
    assert detect_mode_collapse(same, ["x"] * 4, min_distinct=0.2) is None
    assert detect_mode_collapse(same, ["x"] * 4, min_distinct=0.0) is None  # off


def test_special_chars():
    f = detect_special_chars(["fine", "wow!!!!!!!!!", "ok"], run=8)
    assert f.name == "special_chars" and f.flagged == [1] and f.value == 9
    assert detect_special_chars(["fine", "wow!!!"], run=8) is None


def test_reward_range():
    # range [0, 2], margin 0.5 -> allowed [-1, 3]
    f = detect_reward_range([0.5, 3.5, -0.5, -2.0], (0.0, 2.0), 0.5, ["a", "b", "c", "d"])
    assert f.name == "reward_range" and f.flagged == [1, 3]
    assert f.value == -2.0 and f.threshold == -1.0  # the farthest one, against the bound it broke
    assert detect_reward_range([0.5, 2.9], (0.0, 2.0), 0.5, ["a", "b"]) is None
    assert detect_reward_range([100.0], None, 0.5, ["a"]) is None  # no calibration: no check
    # the dict a RewardModel reports works the same way
    cal = {"min": 0.0, "max": 2.0, "mean": 1.0, "p50": 1.0, "n": 10, "units": "raw"}
    assert detect_reward_range([0.5, 3.5], cal, 0.5, ["a", "b"]).flagged == [1]


def test_kl_spike():
    # history mean 2.0, kl_min 1 -> limit 3 * 2 = 6
    assert detect_kl_spike(5.9, [1.0, 3.0], factor=3.0, kl_min=1.0) is None
    f = detect_kl_spike(6.5, [1.0, 3.0], factor=3.0, kl_min=1.0)
    assert f.name == "kl_spike" and f.threshold == pytest.approx(6.0)
    # a near-zero history is floored at kl_min: 2.5 < 3 * 1 is not a spike
    assert detect_kl_spike(2.5, [0.0, 0.01], factor=3.0, kl_min=1.0) is None
    assert detect_kl_spike(50.0, [0.5], factor=3.0, kl_min=1.0) is None  # too little history


# ------------------------------------------------------------------------------------------------
# the monitor


def _tokens(n, start=0):
    return list(range(start, start + n))


def test_monitor_warns_with_name_and_examples(caplog):
    findings = []
    mon = HackingMonitor(HackingConfig(length_ratio=2.0), sink=lambda step, f: findings.append((step, f)))
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        first = mon.check_responses(1, ["short"] * 2, [_tokens(10), _tokens(10, 10)], [0.0, 0.0])
        assert first.findings == [] and mon.baseline_length == 10.0
        out = mon.check_responses(2, ["long one", "long two"], [_tokens(40), _tokens(40, 40)], [0.0, 0.0])
    assert [f.name for f in out.findings] == ["length_blowup"]
    assert out.penalties == [0.0, 0.0]  # action warn: scores untouched
    assert "[length_blowup]" in caplog.text and "long one" in caplog.text
    assert findings[0][0] == 2 and mon.counts == {"length_blowup": 1}
    assert out.metrics()["hacking/length_blowup"] == 1.0


def test_monitor_penalty_applies_to_flagged_responses_only():
    cfg = HackingConfig(special_action="penalty", penalty=-2.5)
    mon = HackingMonitor(cfg)
    out = mon.check_responses(1, ["ok", "%%%%%%%%%%", "fine"], [_tokens(3)] * 3, [0.1, 0.2, 0.3])
    assert out.penalties == [0.0, -2.5, 0.0]


def test_monitor_stop_raises_after_recording():
    cfg = HackingConfig(range_action="stop")
    seen = []
    mon = HackingMonitor(cfg, calibration_range=(-1.0, 1.0), sink=lambda step, f: seen.append(f.name))
    with pytest.raises(RewardHackingStop) as err:
        mon.check_responses(3, ["a", "b"], [_tokens(3), _tokens(3)], [0.0, 9.0])
    assert isinstance(err.value.finding, Finding) and err.value.finding.name == "reward_range"
    assert "reward_range" in str(err.value) and seen == ["reward_range"]


def test_monitor_kl_history_and_state_roundtrip():
    mon = HackingMonitor(HackingConfig(kl_spike_factor=2.0, kl_min=0.5))
    assert mon.check_kl(1, 1.0) is None
    assert mon.check_kl(2, 1.0) is None
    assert mon.check_kl(3, 2.5).name == "kl_spike"  # > 2 * max(1.0, 0.5)
    mon.check_responses(4, ["x"], [_tokens(7)], [0.0])
    other = HackingMonitor(HackingConfig())
    other.load_state_dict(mon.state_dict())
    assert other.kl_history == [1.0, 1.0, 2.5] and other.baseline_length == 7.0
    assert other.counts == {"kl_spike": 1}


def test_monitor_disabled_does_nothing():
    mon = HackingMonitor(HackingConfig(enabled=False), calibration_range=(0.0, 1.0))
    out = mon.check_responses(1, ["!!!!!!!!!!!!"], [[1] * 50], [99.0])
    assert out.findings == [] and mon.check_kl(1, 1e9) is None


def test_config_validation():
    from rlhfkit.config import ConfigError, build

    with pytest.raises(ConfigError, match="length_ratio"):
        build(HackingConfig, {"length_ratio": 0.5})
    with pytest.raises(ConfigError, match="kl_action"):
        build(HackingConfig, {"kl_action": "penalty"})  # batch-level detectors cannot penalise
