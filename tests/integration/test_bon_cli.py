"""Best-of-N and rejection sampling through the CLI on the tiny model with rule-based rewards."""

import json

from tests.conftest import run_cli

BASE = ["model=tiny", "sampling.max_new_tokens=8", "sampling.only_finished=false", "max_prompts=12"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_best_of_n_scores_at_least_as_well_as_a_single_sample(tmp_path, capsys):
    from rlhfkit.rewards import load_reward

    best_dir, single_dir = tmp_path / "best", tmp_path / "single"
    assert run_cli("bon", *BASE, "reward=length:1", "sampling.n=6", "save_all=true",
                   f"output_dir={best_dir}") == 0
    assert "mean best score" in capsys.readouterr().out
    best = rows(best_dir / "best_of_n.jsonl")
    samples = rows(best_dir / "samples.jsonl")
    assert len(best) == 12 and len(samples) == 72
    reward = load_reward("length:1")
    for row in best:
        mine = [s for s in samples if s["prompt"] == row["prompt"]]
        assert row["score"] == max(s["score"] for s in mine)  # the best of its N samples
        assert [s["response"] for s in mine if s["best"]] == [row["response"]]
        assert row["mean_score"] == sum(s["score"] for s in mine) / 6
        assert float(reward([row["prompt"]], [row["response"]])[0]) == row["score"]  # same reward
    summary = json.loads((best_dir / "summary.json").read_text())
    assert summary["mean_best"] > summary["mean_single"]
    # against an independent single-sample run under the same reward
    assert run_cli("bon", *BASE, "reward=length:1", "sampling.n=1", f"output_dir={single_dir}") == 0
    single = rows(single_dir / "best_of_n.jsonl")
    assert sum(r["score"] for r in best) / 12 > sum(r["score"] for r in single) / 12


def test_rejection_sampling_fine_tunes_on_the_kept_best(tmp_path, capsys):
    out = tmp_path / "rs"
    assert run_cli("rejection-sampling", *BASE, "reward=length:1", "sampling.n=4", "threshold=6",
                   f"output_dir={out}", "sft.train.max_steps=2", "sft.train.progress=false",
                   "sft.dev_fraction=0") == 0
    best = rows(out / "best_of_n.jsonl")
    kept = rows(out / "sft_data.jsonl")
    assert kept and len(kept) == sum(r["score"] >= 6 for r in best) < len(best)
    assert all(r["meta"]["score"] >= 6 for r in kept)
    assert {r["response"] for r in kept} <= {r["response"] for r in best}
    assert (out / "sft" / "final" / "model.safetensors").exists()
    printed = capsys.readouterr().out
    assert "SFT finished: 2 optimizer steps" in printed and "below the threshold" in printed


def test_only_finished_skips_prompts_without_eos(tmp_path, capsys):
    # the random tiny model practically never emits EOS within 2 tokens
    out = tmp_path / "fin"
    assert run_cli("bon", "model=tiny", "sampling.max_new_tokens=2", "max_prompts=3", "sampling.n=2",
                   "reward=length", f"output_dir={out}") == 0
    assert rows(out / "best_of_n.jsonl") == []
    assert "3 prompts skipped" in capsys.readouterr().out


def test_missing_or_bad_reward_is_one_line(tmp_path, capsys):
    assert run_cli("bon", "model=tiny", f"output_dir={tmp_path / 'a'}") == 2
    assert "reward: required" in capsys.readouterr().err
    assert run_cli("bon", "model=tiny", "reward=nonsense", f"output_dir={tmp_path / 'b'}") == 2
    err = capsys.readouterr().err.strip()
    assert "reward" in err and "nonsense" in err and len(err.splitlines()) == 1


def test_best_of_n_with_a_trained_reward_model_folder(tmp_path):
    from rlhfkit.rewards import load_reward

    rm = tmp_path / "rm"
    assert run_cli("rm", "train", "model=tiny", f"train.output_dir={rm}", "train.max_steps=2",
                   "train.progress=false") == 0
    out = tmp_path / "bon"
    assert run_cli("bon", *BASE, f"reward={rm / 'final'}", "sampling.n=3", "max_prompts=4",
                   f"output_dir={out}") == 0
    best = rows(out / "best_of_n.jsonl")
    assert len(best) == 4
    reward = load_reward(str(rm / "final"))
    again = reward([r["prompt"] for r in best], [r["response"] for r in best]).tolist()
    for row, score in zip(best, again):
        assert abs(row["score"] - score) < 1e-4 and row["score"] >= row["mean_score"]
