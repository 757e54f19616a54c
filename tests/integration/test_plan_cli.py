"""rlhfkit plan on the tiny model: phases from the stage's own config, JSON output, the pipeline's
multiplier over SFT, memory per role, errors in one line."""

import json

from tests.conftest import run_cli


def _plan(capsys, *argv):
    assert run_cli("plan", *argv, "--json", "--peak-gflops", "100") == 0
    return json.loads(capsys.readouterr().out)


def test_ppo_plan_on_tiny_with_a_rule_reward(capsys):
    report = _plan(capsys, "ppo", "model=tiny", "reward=length", "value_model=head", "ppo.epochs=2",
                   "--prompt-tokens", "10", "--response-tokens", "5")
    (plan,) = report["plans"]
    assert plan["stage"] == "ppo" and plan["unit"] == "iteration" and plan["units"] == 20
    roles = {p["role"] for p in plan["phases"]}
    assert roles == {"policy", "reference"}  # a rule reward, a value head on the policy
    assert plan["model"]["layers"] == 2 and plan["model"]["lm_head_params"] == 49152 * 64
    assert plan["seconds_per_unit"] == plan["flops_per_unit"] / (100e9 * 0.5)
    assert set(plan["memory"]) == {"policy", "reference"} and all(v > 0 for v in plan["memory"].values())
    update = sum(p["flops"] for p in plan["phases"] if p["name"].startswith("update"))
    reference = next(p["flops"] for p in plan["phases"] if p["role"] == "reference")
    assert update == 2 * 3 * reference  # 2 epochs of forward + backward over the same 16 rows


def test_pipeline_plan_gives_the_multiplier_over_sft(capsys):
    report = _plan(capsys, "pipeline", "model=tiny", "--prompt-tokens", "20", "--response-tokens", "20")
    stages = [p["stage"] for p in report["plans"]]
    assert stages == ["sft", "rm", "ppo"]
    totals = [p["total_flops"] for p in report["plans"]]
    assert report["multiplier_over_sft"] == sum(totals) / totals[0] > 1
    sft = report["plans"][0]
    assert sft["units"] == 9  # 40 demo demonstrations, 4 held out for dev, 2 epochs at batch 8: ceil(72 / 8)
    rm = report["plans"][1]
    assert rm["units"] == 12  # 40 demo pairs, 8 held out (dev_fraction 0.2), 3 epochs at batch 8: 96 / 8
    assert report["plans"][2]["units"] == 16  # the demo PPO: 16 iterations


def test_table_output_and_a_bad_key(capsys):
    assert run_cli("plan", "sft", "model=tiny", "train.max_steps=3", "--peak-gflops", "50") == 0
    out = capsys.readouterr().out
    assert "update backward" in out and "run: 3 x optimizer step" in out and "memory (GiB" in out
    assert run_cli("plan", "sft", "model=tiny", "train.nope=1") == 2
    assert "train.nope: unknown config key" in capsys.readouterr().err


def test_lengths_are_measured_in_the_stage_data(capsys):
    from rlhfkit.data.sources import load
    from rlhfkit.data.tokenize import encode_example
    from rlhfkit.models import load_tokenizer

    report = _plan(capsys, "sft", "model=tiny", "max_length=64")
    note = report["plans"][0]["assumptions"][0]
    tok = load_tokenizer("tiny")
    enc = [encode_example(tok, r.prompt, r.response, 64) for r in load("demo:sft", "sft").records]
    prompt = sum(len(e.prompt_ids) for e in enc) / len(enc)
    assert f"prompt {round(prompt, 1):.1f} (measured in the data)" in note
    no_data = _plan(capsys, "sft", "model=tiny", "max_length=64", "--no-data")
    assert "prompt 32.0 (the config's cap: worst case)" in no_data["plans"][0]["assumptions"][0]
    assert no_data["plans"][0]["units"] is None


def test_tiny_model_shape_counted_by_hand():
    from rlhfkit.eval.plan_cli import model_shape
    from rlhfkit.train.config import LoraConfig

    shape = model_shape("tiny", "causal")
    # per layer: q 64x64, k and v 64x32 (2 of 4 heads' width), o 64x64, MLP 3 x 64x128, 2 norms of 64
    per_layer = 4096 + 2048 + 2048 + 4096 + 3 * 64 * 128 + 2 * 64
    assert (shape.layers, shape.d_attn, shape.body, shape.head) == (2, 64, 2 * per_layer + 64, 49152 * 64)
    lora = model_shape("tiny", "causal", LoraConfig(enabled=True, r=16))
    # r x (in + out) per adapted matrix: q, o 128; k, v 96; gate, up, down 192
    assert lora.lora == 2 * 16 * (128 + 96 + 96 + 128 + 3 * 192) and lora.body == shape.body
    assert model_shape("tiny", "scalar").body == shape.body  # the reward model: same body, scalar head
