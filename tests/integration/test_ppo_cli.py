"""PPO through the CLI on a tiny model: it raises a rule-based reward, a hackable length reward
trips the length detector, a resumed run takes exactly the steps the uninterrupted one took, LoRA
mode saves a merged policy plus its adapter, and bad input fails in one line.

The policy is the tiny random Llama with a unigram prior (tests/integration/rl_models.py), so a
reward for saying "the" can be learned in a few iterations."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.integration.rl_models import make_prior_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior_model(tmp_path_factory):
    return make_prior_model(tmp_path_factory.mktemp("models") / "prior")


def base_args(model, out, *extra):
    return ["ppo", f"model={model}", f"train.output_dir={out}", "train.progress=false",
            "ppo.prompts_per_batch=16", "train.micro_batch_size=8", "train.grad_accum=1",
            "rollout.temperature=1.0", "rollout.missing_eos=keep", "rollout.max_new_tokens=8",
            "data.eval_prompts=8", "samples.prompts=1", "samples.max_new_tokens=8", *extra]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ppo_raises_a_rule_based_reward(prior_model, tmp_path, capsys):
    out = tmp_path / "ppo"
    assert run_cli(*base_args(prior_model, out, "reward=contains:the", "value_model=head",
                              "train.max_steps=8", "ppo.epochs=4", "optim.lr=3e-3")) == 0
    metrics = [r for r in rows(out / "metrics.jsonl") if "score" in r]
    assert [r["step"] for r in metrics] == list(range(1, 9))
    first = sum(r["score"] for r in metrics[:2]) / 2
    last = sum(r["score"] for r in metrics[-2:]) / 2
    assert last > first + 0.3, [round(r["score"], 3) for r in metrics]
    for key in ("score", "kl", "reward", "policy_loss", "value_loss", "entropy", "clipfrac", "approx_kl",
                "response_length", "tokens_per_s", "time_rollout", "time_scoring", "time_update", "kl_coef",
                "lr"):
        assert key in metrics[-1], key
    assert metrics[-1]["lr"] == pytest.approx(0.0)  # annealed to zero at the last optimizer step
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.startswith("held-out prompts"))
    before, after = (float(x) for x in line.split("reward ")[1].split(";")[0].split(" -> "))
    assert after > before
    evals = [r for r in rows(out / "metrics.jsonl") if "eval/score" in r]  # start and end of the held-out curve
    assert (evals[0]["step"], evals[-1]["step"]) == (0, 8)
    assert (evals[0]["eval/score"], evals[-1]["eval/score"]) == pytest.approx((before, after), abs=1e-4)
    assert "before:" in printed and "after:" in printed and "curves:" in printed
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "final")  # a plain HF folder
    assert (out / "final" / "value" / "value_head.safetensors").exists()
    start = load_file(str(prior_model / "model.safetensors"))
    end = load_file(str(out / "final" / "model.safetensors"))
    assert not torch.equal(start["lm_head.weight"], end["lm_head.weight"])


def test_length_reward_trips_the_length_detector(prior_model, tmp_path, capsys, caplog):
    out = tmp_path / "hack"
    assert run_cli(*base_args(prior_model, out, "reward=length:1", "value_model=head",
                              "rollout.max_new_tokens=32", "train.max_steps=8", "ppo.epochs=4",
                              "optim.lr=3e-3", "score.normalize=running", "hacking.length_ratio=1.8",
                              "hacking.length_action=stop", "data.eval_prompts=0")) == 0
    found = [json.loads(line) for line in (out / "hacking.jsonl").read_text().splitlines()]
    blowups = [f for f in found if f["name"] == "length_blowup"]
    assert blowups and blowups[0]["examples"], found
    assert blowups[0]["value"] > blowups[0]["threshold"]
    assert "stopped early by the reward-hacking watch: length_blowup" in capsys.readouterr().out
    assert "reward hacking? [length_blowup]" in caplog.text and "e.g." in caplog.text
    steps = [r["step"] for r in rows(out / "metrics.jsonl") if "score" in r]
    assert steps and max(steps) < 8 and (out / "final").exists()


def test_resume_takes_the_same_next_step(prior_model, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["reward=contains:the", "value_model=policy", "train.max_steps=3", "train.save_every=2",
            "train.keep_checkpoints=5", "ppo.epochs=2", "ppo.prompts_per_batch=8", "optim.lr=1e-3",
            "kl.adaptive=true", "kl.target=0.5", "kl.horizon=100", "score.normalize=running",
            "data.eval_prompts=0", "samples.prompts=0", "rollout.max_new_tokens=6"]
    assert run_cli(*base_args(prior_model, full, *args)) == 0
    shutil.copytree(full, part)
    shutil.rmtree(part / "final")  # as if killed right after the step-2 checkpoint
    shutil.rmtree(part / "checkpoints" / "step-000003")
    assert run_cli(*base_args(prior_model, part, *args)) == 0
    for sub in ("model.safetensors", "value/model.safetensors"):
        a, b = load_file(str(full / "final" / sub)), load_file(str(part / "final" / sub))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (sub, key)
    full_rows = [r for r in rows(full / "metrics.jsonl") if "score" in r]
    part_rows = [r for r in rows(part / "metrics.jsonl") if "score" in r]
    assert [r["step"] for r in part_rows] == [1, 2, 3]
    for a, b in zip(full_rows, part_rows):
        for key in ("score", "kl", "kl_coef", "policy_loss", "value_loss", "lr"):
            assert a[key] == b[key], key


def test_lora_mode_saves_merged_policy_adapter_and_value(prior_model, tmp_path):
    out = tmp_path / "lora"
    assert run_cli(*base_args(prior_model, out, "reward=contains:the", "lora.enabled=true", "lora.r=4",
                              "value_model=head", "train.max_steps=2", "ppo.epochs=1", "optim.lr=1e-2",
                              "ppo.prompts_per_batch=8", "data.eval_prompts=2", "samples.prompts=0")) == 0
    assert (out / "final" / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "final" / "value" / "value_head.safetensors").exists()
    merged = load_file(str(out / "final" / "model.safetensors"))
    assert not any("lora" in k for k in merged)
    base = load_file(str(prior_model / "model.safetensors"))
    assert any(not torch.equal(base[k], merged[k]) for k in base if "q_proj" in k)
    ckpt = sorted((out / "checkpoints").iterdir())[-1]
    assert (ckpt / "policy" / "adapter_model.safetensors").exists()


def test_missing_eos_drop_runs_and_reference_model_flag(prior_model, tmp_path):
    """At the first iteration the policy is its own reference (KL 0); ``reference=tiny`` (the random
    model without the prior's unigram bias) must be the one the KL is measured against."""
    kl = {}
    for flag in ([], ["reference=tiny"]):
        out = tmp_path / f"drop{len(flag)}"
        assert run_cli(*base_args(prior_model, out, "reward=contains:the", "rollout.missing_eos=drop",
                                  "value_model=head", "train.max_steps=1", "ppo.epochs=1",
                                  "ppo.prompts_per_batch=8", "data.eval_prompts=0", "samples.prompts=0",
                                  "rollout.max_new_tokens=4", *flag)) == 0
        (row,) = [r for r in rows(out / "metrics.jsonl") if "score" in r]
        kl[bool(flag)] = row["kl"]
        assert "score_baseline" not in row  # ppo.score_baseline=none
    assert abs(kl[False]) < 1e-3 and kl[True] > 1.0, kl  # measured: 8e-7 and 16.2 nats per response


@pytest.mark.parametrize("reward, message", [
    ("", "reward: required"),
    ("nonsense:thing", "reward: reward 'nonsense:thing'"),
])
def test_bad_reward_is_one_line_error(tmp_path, capsys, reward, message):
    assert run_cli("ppo", "model=tiny", f"reward={reward}", f"train.output_dir={tmp_path / 'x'}") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_minibatch_must_tile_the_rollout_batch(tmp_path, capsys):
    assert run_cli("ppo", "model=tiny", "reward=length", "ppo.prompts_per_batch=6",
                   "train.micro_batch_size=4", f"train.output_dir={tmp_path / 'y'}") == 2
    assert "must be a multiple of the minibatch" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_shipped_configs_load(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    configs = [("ppo", p) for p in sorted((root / "ppo").glob("*.yaml"))]
    configs += [("rloo" if "rloo" in p.name else "grpo", p) for p in sorted((root / "grpo").glob("*.yaml"))]
    assert len(configs) >= 4
    for command, path in configs:
        assert run_cli(command, "--config", str(path), "--show-config") == 0, path
    assert "value_model" in capsys.readouterr().out


def test_python_reward_function_is_first_class(prior_model, tmp_path):
    """``ppo.run(cfg, reward_fn=...)``: a plain function instead of the reward config key."""
    from rlhfkit.config import load_config
    from rlhfkit.stages import ppo

    seen = []

    def reward_fn(prompts, responses):
        seen.append((len(prompts), len(responses)))
        return {"rewards": [float(len(r)) for r in responses], "logs": {"calls": len(seen)}}

    cfg = load_config(ppo.PPOConfig, None, [f"model={prior_model}", f"train.output_dir={tmp_path / 'fn'}",
                                            "train.max_steps=1", "ppo.epochs=1", "ppo.prompts_per_batch=8",
                                            "train.micro_batch_size=8", "train.grad_accum=1",
                                            "value_model=head", "rollout.max_new_tokens=4",
                                            "data.eval_prompts=0", "samples.prompts=0", "train.progress=false"])
    result = ppo.run(cfg, reward_fn=reward_fn)
    assert result.steps == 1 and seen == [(8, 8)]
    (row,) = [r for r in rows(tmp_path / "fn" / "metrics.jsonl") if "score" in r]
    assert row["reward/calls"] == 1.0


def test_samples_per_prompt_with_a_group_baseline(prior_model, tmp_path):
    """4 prompts x 2 samples: the reward sees each prompt twice in a row, and the group baseline
    trains (the batch vocabulary counts 8 responses)."""
    from rlhfkit.config import load_config
    from rlhfkit.stages import ppo

    seen = []

    def reward_fn(prompts, responses):
        seen.append(list(prompts))
        return [float(len(r)) for r in responses]

    cfg = load_config(ppo.PPOConfig, None, [f"model={prior_model}", f"train.output_dir={tmp_path / 'g'}",
                                            "train.max_steps=1", "ppo.epochs=1", "ppo.prompts_per_batch=4",
                                            "ppo.samples_per_prompt=2", "ppo.score_baseline=group",
                                            "train.micro_batch_size=8", "train.grad_accum=1",
                                            "value_model=head", "rollout.max_new_tokens=4",
                                            "rollout.missing_eos=keep",
                                            "data.eval_prompts=0", "samples.prompts=0", "train.progress=false"])
    assert ppo.run(cfg, reward_fn=reward_fn).steps == 1
    (prompts,) = seen
    assert len(prompts) == 8 and len({str(p) for p in prompts}) == 4
    assert all(prompts[i] == prompts[i + 1] for i in range(0, 8, 2))
    (row,) = [r for r in rows(tmp_path / "g" / "metrics.jsonl") if "score" in r]
    assert row["score_used"] == pytest.approx(row["score"])  # stats report the scores before the baseline
    # the baseline was applied: leave-one-out means of two samples average to the mean score (> 0
    # for this length reward); a run without the baseline reports none
    assert row["score_baseline"] == pytest.approx(row["score"]) and row["score"] > 0


def test_kl_penalty_variant_adapts_its_beta_and_raises_the_reward(prior_model, tmp_path):
    """ppo.variant=kl_penalty (Schulman et al. 2017 sec. 4): no clipping; after each update beta
    halves when the policy KL stayed below target / 1.5 and doubles above target * 1.5."""
    out = tmp_path / "klpen"
    target = 0.01
    assert run_cli(*base_args(prior_model, out, "reward=contains:the", "value_model=head", "train.max_steps=6",
                              "ppo.epochs=4", "optim.lr=3e-3", "ppo.variant=kl_penalty",
                              "ppo.kl_penalty_beta=0.1", f"ppo.kl_penalty_target={target}",
                              "data.eval_prompts=0", "samples.prompts=0")) == 0
    metrics = [r for r in rows(out / "metrics.jsonl") if "score" in r]
    assert metrics[0]["policy_kl_coef"] == pytest.approx(0.1)
    for before, after in zip(metrics, metrics[1:]):
        d = before["policy_kl"]
        factor = 0.5 if d < target / 1.5 else 2.0 if d > target * 1.5 else 1.0
        assert after["policy_kl_coef"] == pytest.approx(before["policy_kl_coef"] * factor)
    assert all(r["clipfrac"] == 0.0 for r in metrics)
    first = sum(r["score"] for r in metrics[:2]) / 2
    last = sum(r["score"] for r in metrics[-2:]) / 2
    assert last > first, [round(r["score"], 3) for r in metrics]
