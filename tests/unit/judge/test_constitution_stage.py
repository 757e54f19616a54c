"""The constitution stage's pure parts: revision chains and their provenance, the (original, revision)
pairs, the win-rate arithmetic, which phases run, and the changed-settings check."""

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.data.records import Message, SFTExample
from rlhfkit.judge.constitution import load_constitution
from rlhfkit.judge.verdict import Verdict
from rlhfkit.stages import constitution as stage

PROMPT = (Message("user", "q"),)


def verdict(prob):
    """A verdict on (original = A, revision = B); label 0.0 as the judge passes it on from the pair."""
    if prob is None:
        return Verdict(None, None, None, "refused", None, label=0.0)
    return Verdict(prob, prob, prob, "ok", True, label=0.0)


def test_chain_keeps_the_previous_response_after_an_empty_revision():
    chain = stage.RevisionChain(PROMPT, "first")
    chain.add("honest", "crit 1", "second")
    chain.add("harmless", "crit 2", "")
    assert chain.final == "second"
    assert chain.provenance() == {
        "original": "first", "principles": ["honest", "harmless"],
        "steps": [{"principle": "honest", "critique": "crit 1", "revision": "second"},
                  {"principle": "harmless", "critique": "crit 2", "revision": "", "empty": True}]}


def test_revision_pairs_one_per_distinct_principle_and_unchanged_not_judged():
    c = load_constitution()
    prov = {"original": "a", "principles": ["honest", "harmless", "honest"], "steps": []}
    records = [SFTExample(PROMPT, "b", meta={"constitution": prov}),
               SFTExample(PROMPT, "a", meta={"constitution": {**prov, "principles": ["legal"]}})]
    pairs, unchanged = stage.revision_pairs(records, c)
    assert unchanged == 1
    assert [(p.meta["principle_name"], p.response_a, p.response_b, p.label) for p in pairs] == [
        ("honest", "a", "b", 0.0), ("harmless", "a", "b", 0.0)]
    assert pairs[1].principle == next(p.principle for p in c.principles if p.name == "harmless")


def test_win_rates_by_hand():
    from rlhfkit.judge.judge import JudgePair

    names = ["honest", "harmless", "legal"]
    pairs = [JudgePair(PROMPT, "o", "r", label=0.0, meta={"principle_name": n})
             for n in ["honest", "honest", "honest", "harmless"]]
    # prob = P(original better): 0.2 and 0.4 -> revision wins, 0.5 a tie (half), refused not counted
    verdicts = [verdict(0.2), verdict(0.4), verdict(0.5), verdict(None)]
    report = stage.win_rates(pairs, verdicts, names)
    honest = report["per_principle"]["honest"]
    assert honest["pairs"] == 3 and honest["ok"] == 3 and honest["revision_preferred"] == 2
    assert honest["share"] == pytest.approx(2.5 / 3)
    assert honest["mean_p_revision"] == pytest.approx(1 - (0.2 + 0.4 + 0.5) / 3)
    assert report["per_principle"]["harmless"] == {"pairs": 1, "ok": 0, "revision_preferred": 0,
                                                   "share": None, "mean_p_revision": None, "inconsistent": 0}
    assert "legal" not in report["per_principle"]
    assert report["all"]["pairs"] == 4 and report["all"]["revision_preferred"] == 2
    lines = stage.win_rate_lines({"judge": "ai:x", "unchanged": 0, "records": 4, **report})
    assert any(line.split()[:3] == ["honest", "2/3", "83.3%"] for line in lines)


def test_phases_follow_until_method_and_report():
    cfg = load_config(stage.ConstitutionConfig, overrides=["until=sl"])
    assert stage.phases_to_run(cfg) == ["revise", "revision_report", "sl_train"]
    cfg = load_config(stage.ConstitutionConfig, overrides=["sl.report=false", "rl.method=dpo"])
    assert stage.phases_to_run(cfg) == ["revise", "sl_train", "rl_data", "rl_policy"]
    cfg = load_config(stage.ConstitutionConfig)
    assert stage.phases_to_run(cfg)[-2:] == ["rl_reward", "rl_policy"]


def test_changed_settings_of_a_finished_phase_are_named(tmp_path):
    from rlhfkit.stages.phases import PhaseState

    c = load_constitution()
    cfg = load_config(stage.ConstitutionConfig, overrides=[f"output_dir={tmp_path}"])
    now = lambda: {phase: stage.fingerprint(cfg, phase, c) for phase in stage.PHASES}  # noqa: E731
    PhaseState.load(tmp_path).finish("sl_train", now()["sl_train"], {"model": "sl/sft/final"}, 1.0)
    state = PhaseState.load(tmp_path)
    state.check(now())  # the same settings: fine
    cfg.sl.sft.train.progress = False  # a logging key: free
    cfg.sl.sft.train.max_steps = 99  # run length: free, as for a resumed stage
    state.check(now())
    cfg.sl.sft.optim.lr = 1e-3
    with pytest.raises(ConfigError, match=r"phase sl_train finished with other settings "
                                          r"\(sl.sft.optim.lr: 3e-05 -> 0.001\)"):
        state.check(now())
    cfg.sl.sft.optim.lr = 3e-5
    cfg.rl.dpo.beta = 0.5  # another phase's key: fine
    state.check(now())


def test_an_edited_constitution_file_counts_as_changed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(open(load_constitution().source).read())
    cfg = load_config(stage.ConstitutionConfig, overrides=[f"constitution={f}"])
    before = stage.fingerprint(cfg, "revise", load_constitution(f))
    f.write_text(f.read_text().replace("Rewrite your last response", "Rewrite your answer"))
    after = stage.fingerprint(cfg, "revise", load_constitution(f))
    assert before["constitution"] == after["constitution"]
    assert before["constitution_sha256"] != after["constitution_sha256"]


def test_config_refuses_a_studio_project_for_the_judge():
    with pytest.raises(ConfigError, match="judge.studio_project"):
        load_config(stage.ConstitutionConfig, overrides=["judge.studio_project=x"])
    with pytest.raises(ConfigError, match="sl: revisions"):
        load_config(stage.ConstitutionConfig, overrides=["sl.revisions=0"])
