"""``rlhfkit eval`` and ``rlhfkit eval overopt`` through the CLI on the tiny model, judged by rule
rewards (so every score can be recomputed here)."""

import json
import shutil

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["max_prompts=6", "sampling.max_new_tokens=8", "sampling.n=3"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_compares_two_tiny_policies_with_themselves(tmp_path, capsys):
    from rlhfkit.models.loading import resolve_model_path
    from rlhfkit.rewards import load_reward

    run_dir = tmp_path / "run"  # a run folder: its final/ model is the policy
    shutil.copytree(resolve_model_path("tiny"), run_dir / "final")
    out = tmp_path / "eval"
    # confidence 0.99: the same weights must land inside the interval in all but 1% of seeds
    assert run_cli("eval", f"policies=[{run_dir}]", "baseline=tiny", "judge=length:1", *FAST,
                   "bootstrap=300", "confidence=0.99", "people_pairs=2", f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "win rate" in printed and "LC win" in printed and str(out / "eval.json") in printed
    summary = json.loads((out / "eval.json").read_text())
    assert (summary["prompts"], summary["samples_per_prompt"], summary["comparisons_per_policy"]) == (6, 3, 54)
    assert [p["name"] for p in summary["policies"]] == [str(run_dir)]
    assert summary["policies"][0]["path"] == str(run_dir / "final")
    assert summary["baseline"]["name"] == "tiny" and "win_rate" not in summary["baseline"]
    samples = rows(out / "samples.jsonl")
    assert len(samples) == 2 * 6 * 3
    judge = load_reward("length:1")
    assert all(s["score"] == len(s["response"].split()) == s["words"] for s in samples)
    assert float(judge([samples[0]["prompt"]], [samples[0]["response"]])[0]) == samples[0]["score"]
    base = [s for s in samples if s["policy_index"] == 0]
    for i, pol in enumerate(summary["policies"], start=1):
        lo, hi = pol["win_rate_ci"]
        assert lo <= 0.5 <= hi and lo <= pol["win_rate"] <= hi  # the same weights: ~0.5 within its CI
        assert pol["wins"] + pol["ties"] + pol["losses"] == 54
        assert pol["win_rate"] == pytest.approx((pol["wins"] + pol["ties"] / 2) / 54)
        mine = [s for s in samples if s["policy_index"] == i]
        assert len(mine) == 18 and pol["mean_score"] == pytest.approx(sum(s["score"] for s in mine) / 18)
        # the win rate recomputed: every policy sample against every baseline sample of its prompt
        verdicts = [1.0 if a["score"] > b["score"] else 0.5 if a["score"] == b["score"] else 0.0
                    for a in mine for b in base if a["prompt_index"] == b["prompt_index"]]
        assert pol["win_rate"] == pytest.approx(sum(verdicts) / 54)
        # the judge is the length itself: at equal length every comparison is a tie
        assert pol["lc_win_rate"] == pytest.approx(0.5, abs=1e-3)
        div = pol["diversity"]
        assert 0 < div["distinct_2"] <= 1 and 0 <= div["self_bleu_within"] <= 1
        assert -1 <= div["cosine_within"] <= 1 and -1 <= div["cosine_across"] <= 1
        assert pol["mode_collapse"] == {"collapsed": False, "reasons": []}
    assert summary["collapse_thresholds"]["max_self_bleu"] == 0.7
    people = rows(out / "people_pairs.jsonl")  # for the studio: the policy's and the baseline's first answers
    assert len(people) == summary["people_pairs"] and 1 <= len(people) <= 2
    for r in people:
        p = r["eval"]["prompt_index"]
        assert r["responses"][r["eval"]["policy_response"]] == mine[3 * p]["response"]
        assert r["responses"][1 - r["eval"]["policy_response"]] == base[3 * p]["response"]
    # the report reads what eval wrote: its table and the answers side by side, no unreadable part
    assert run_cli("report", str(out)) == 0
    page = (out / "report.html").read_text()
    assert "Evaluation against the baseline" in page and "could not read" not in page
    assert f"{summary['policies'][0]['win_rate']:.4g}" in page


def test_eval_config_errors_are_one_line(tmp_path, capsys):
    assert run_cli("eval", "policies=[tiny]", "baseline=tiny", f"output_dir={tmp_path / 'a'}") == 2
    assert "judge: required" in capsys.readouterr().err
    assert run_cli("eval", "policies=[tiny]", "baseline=tiny", "judge=nonsense", f"output_dir={tmp_path}") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlhfkit eval: error: judge:") and len(err.splitlines()) == 1
    assert run_cli("eval", "policies=[tiny]", f"baseline={tmp_path / 'nope'}", "judge=length",
                   f"output_dir={tmp_path / 'c'}") == 2
    assert "no such model folder" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert run_cli("eval", "overopt", "policy=tiny", "proxy=length", "gold=length", "max_n=6") == 2
    assert "max_n: must be a power of 2" in capsys.readouterr().err


def test_overopt_best_of_n_curve_from_two_rule_rewards(tmp_path, capsys):
    from rlhfkit.eval.overopt import bon_expected
    from rlhfkit.eval.stats import bon_kl

    out = tmp_path / "overopt"
    assert run_cli("eval", "policies=[tiny]", f"baseline={tmp_path / 'nope'}", "judge=length",
                   f"output_dir={tmp_path / 'c'}") == 2
    assert "no such model folder" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert run_cli("eval", "overopt", "policy=tiny", "proxy=length:1", "gold=regex:^.{0,30}$", "max_prompts=4",
                   "sampling.max_new_tokens=8", "sampling.n=8", "max_n=8", f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "gold" in printed and str(out / "overopt.png") in printed
    assert (out / "overopt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "overopt.json").read_text())
    curve = summary["curve"]
    assert [r["n"] for r in curve] == [1, 2, 4, 8]
    assert [r["kl"] for r in curve] == pytest.approx([bon_kl(n) for n in (1, 2, 4, 8)])
    samples = rows(out / "samples.jsonl")
    assert len(samples) == 32
    groups = [[s for s in samples if s["prompt_index"] == p] for p in range(4)]
    for r in curve:  # each point recomputed from the stored scores
        assert r["proxy"] == pytest.approx(sum(bon_expected([s["proxy"] for s in g], [s["proxy"] for s in g],
                                                            r["n"]) for g in groups) / 4)
        assert r["gold"] == pytest.approx(sum(bon_expected([s["proxy"] for s in g], [s["gold"] for s in g],
                                                           r["n"]) for g in groups) / 4)
    proxies = [r["proxy"] for r in curve]
    assert proxies == sorted(proxies)  # selecting by the proxy never lowers its expected value
    assert curve[0]["proxy"] == pytest.approx(sum(s["proxy"] for s in samples) / 32)
    assert summary["fits"]["proxy"]["alpha"] > 0
    assert summary["gold_best_measured"]["n"] in (1, 2, 4, 8)


def _perturbed_copy(src, dst, scale, seed):
    import torch

    from rlhfkit.models.loading import load_causal_lm

    model, tok = load_causal_lm(src)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    model.save_pretrained(dst)
    tok.save_pretrained(dst)


def test_frontier_measures_kl_of_each_checkpoint_to_the_reference(tmp_path, capsys):
    import torch
    from peft import LoraConfig, get_peft_model

    from rlhfkit.models.loading import load_causal_lm, resolve_model_path

    run = tmp_path / "ppo"  # an RL run folder as rlhfkit ppo leaves it (LoRA checkpoints hold adapters)
    (run / "checkpoints" / "step-000002").mkdir(parents=True)
    tiny = resolve_model_path("tiny")
    (run / "config.yaml").write_text(f"model: {tiny}\nreference: ''\nreward: length:1\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "score": 0.0}) + "\n" for s in (1, 2, 3)))
    _perturbed_copy(tiny, run / "checkpoints" / "step-000001" / "policy", 0.005, 1)
    model, _ = load_causal_lm(tiny)
    torch.manual_seed(2)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(run / "checkpoints" / "step-000002" / "policy")
    _perturbed_copy(tiny, run / "final", 0.05, 3)
    assert run_cli("eval", "frontier", f"run={run}", "gold=length:2", "max_prompts=4", "sampling.max_new_tokens=8") == 0
    assert "reward vs KL across 4 points" in capsys.readouterr().out
    summary = json.loads((run / "frontier" / "frontier.json").read_text())
    curve = summary["curve"]
    assert [(r["label"], r["step"]) for r in curve] == [("start", 0), ("step 1", 1), ("step 2", 2), ("final", 3)]
    assert summary["proxy"] == "length:1"  # the reward the run optimised
    samples = rows(run / "frontier" / "samples.jsonl")
    assert len(samples) == 4 * 4 * 2
    assert all(abs(s["kl"]) < 1e-4 for s in samples if s["point"] == "start")  # the reference itself
    kl = {r["label"]: r["kl"] for r in curve}
    assert kl["step 2"] > 1e-3  # the adapter was applied
    assert kl["final"] > 10 * kl["step 1"] > 0  # 10x the weight noise: ~100x the KL
    for r in curve:
        mine = [s for s in samples if s["point"] == r["label"]]
        assert r["kl"] == pytest.approx(sum(s["kl"] for s in mine) / 8)
        assert r["gold"] == pytest.approx(r["proxy"] / 2)
        assert r["sqrt_kl"] == pytest.approx(max(r["kl"], 0) ** 0.5)
    assert (run / "frontier" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["fits"]["gold"]["form"] == "rl"
    assert run_cli("report", str(run)) == 0  # the run folder's report shows the frontier
    page = (run / "report.html").read_text()
    assert "Reward vs KL across the run" in page and "could not read" not in page and "frontier.png" in page
