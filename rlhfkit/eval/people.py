"""People as the judge: ``rlhfkit eval`` writes answer pairs for the studio, ``rlhfkit eval people``
reads the studio's verdicts back into win rates.

1. ``rlhfkit eval ... people_pairs=N`` writes ``people_pairs.jsonl``: for each policy, N prompts
   with the policy's and the baseline's first answer in a seeded random order (so annotators cannot
   tell which is which), in the studio's candidate format ``{"prompt", "responses": [a, b]}``; the
   ``eval`` key of each line says which answer is the policy's (the studio ignores it).
2. People label them in a pairwise studio project::

       rlhfkit studio create-project eval-hh --task pairwise --overlap 3
       rlhfkit studio import eval-hh runs/eval-hh/people_pairs.jsonl
       ...                                                     # annotators label in the browser
       rlhfkit studio export eval-hh --out runs/eval-hh/people_labels.jsonl

3. ``rlhfkit eval people pairs=runs/eval-hh/people_pairs.jsonl labels=runs/eval-hh/people_labels.jsonl``
   matches each exported PreferencePair (prompt, chosen, rejected, label = P(chosen better), 0.5 for
   a tie) to its line by the two answer texts, and reports per policy the win rate against the
   baseline (a tie counting one half) with a percentile bootstrap CI over prompts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.config import opt

PAIRS_FILE = "people_pairs.jsonl"
RESULT_FILE = "people.json"


def people_pair_rows(policy_index: int, name: str, prompts: list, policy_texts: list, baseline_texts: list,
                     n: int, seed: int) -> list[dict]:
    """Up to ``n`` studio candidate rows for one policy (first answer of each of the first n prompts),
    the two answers in a random order drawn from ``seed``. A prompt where an answer is empty or both
    are the same text is skipped (there is nothing to judge; the studio rejects empty candidates)."""
    from rlhfkit.data.records import conversation_to_json

    rng = random.Random(seed + policy_index)
    rows = []
    for p in range(len(prompts)):
        pair = [policy_texts[p][0], baseline_texts[p][0]]
        if len(rows) >= n or not all(t.strip() for t in pair) or pair[0].strip() == pair[1].strip():
            continue
        first = rng.random() < 0.5  # True: the policy's answer is shown first
        rows.append({"prompt": conversation_to_json(prompts[p]), "responses": pair if first else pair[::-1],
                     "eval": {"policy": name, "policy_index": policy_index, "prompt_index": p,
                              "policy_response": 0 if first else 1}})
    return rows


def people_verdicts(pair_rows: list[dict], labels: list) -> dict[int, list[tuple[int, float]]]:
    """``policy_index -> [(prompt_index, verdict)]`` for every exported label that matches a line of
    ``people_pairs.jsonl`` by its two answers: verdict = label if the policy's answer was chosen,
    1 - label if the baseline's was (a tie, label 0.5, gives 0.5 either way)."""
    def key(a: str, b: str) -> tuple:
        return tuple(sorted((a.strip(), b.strip())))  # surrounding white space may not survive a round trip

    by_texts: dict[tuple, list[dict]] = {}
    for row in pair_rows:
        by_texts.setdefault(key(*row["responses"]), []).append(row)
    out: dict[int, list[tuple[int, float]]] = {}
    for pair in labels:
        for row in by_texts.get(key(pair.chosen, pair.rejected), []):
            ev = row["eval"]
            mine = row["responses"][ev["policy_response"]].strip()
            verdict = float(pair.label) if pair.chosen.strip() == mine else 1.0 - float(pair.label)
            out.setdefault(ev["policy_index"], []).append((ev["prompt_index"], verdict))
    return out


@dataclass
class PeopleConfig:
    pairs: str = opt("", "people_pairs.jsonl written by rlhfkit eval people_pairs=N")
    labels: str = opt("", "the studio's export of that project (rlhfkit studio export ... --out FILE)")
    bootstrap: int = opt(1000, "bootstrap resamples of the prompts for the confidence intervals")
    confidence: float = opt(0.95, "confidence level of the intervals (percentile bootstrap)")
    seed: int = opt(0, "bootstrap seed")
    output_dir: str = opt("", "where people.json goes ('' = the folder of pairs)")

    def validate(self) -> None:
        if not self.pairs or not self.labels:
            raise ValueError("pairs and labels: both required (people_pairs.jsonl and the studio export)")
        if self.bootstrap < 1 or not 0 < self.confidence < 1:
            raise ValueError("bootstrap must be >= 1 and confidence in (0, 1)")


@dataclass
class PeopleResult:
    path: Path
    summary: dict


def policy_people_stats(verdicts: list[tuple[int, float]], cfg: PeopleConfig) -> dict:
    """Win rate (ties one half) and its bootstrap CI over prompts (a prompt's labels stay together)."""
    import numpy as np

    from rlhfkit.eval.stats import bootstrap_ci, win_rate

    prompts = sorted({p for p, _ in verdicts})
    per_prompt = [np.array([v for p, v in verdicts if p == q]) for q in prompts]
    wr = win_rate([v for _, v in verdicts])

    def stat(idx):
        return float(np.concatenate([per_prompt[i] for i in idx]).mean())

    ci = bootstrap_ci(len(prompts), stat, cfg.bootstrap, cfg.confidence, cfg.seed)
    return {"labels": wr.n, "prompts": len(prompts), "win_rate": wr.rate, "win_rate_ci": list(ci),
            "wins": wr.wins, "ties": wr.ties, "losses": wr.losses}


def run(cfg: PeopleConfig) -> PeopleResult:
    import json

    from rlhfkit.data.sources import load, resolve_data_path
    from rlhfkit.errors import MissingFileError
    from rlhfkit.utils.io import write_json

    pairs_path = resolve_data_path(cfg.pairs)
    pair_rows = [json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = load(cfg.labels, "pairs").records
    verdicts = people_verdicts(pair_rows, labels)
    if not verdicts:
        raise MissingFileError(f"{cfg.labels}: no label matches an answer pair of {cfg.pairs} (export the "
                               "studio project that imported that file)")
    names = {r["eval"]["policy_index"]: r["eval"]["policy"] for r in pair_rows}
    policies = [{"name": names[i], **policy_people_stats(v, cfg)} for i, v in sorted(verdicts.items())]
    summary = {"pairs": str(cfg.pairs), "labels": str(cfg.labels), "matched_labels": sum(p["labels"] for p in policies),
               "exported_labels": len(labels), "confidence": cfg.confidence, "policies": policies}
    path = Path(cfg.output_dir or pairs_path.parent) / RESULT_FILE
    write_json(path, summary)
    return PeopleResult(path, summary)


def report(result: PeopleResult) -> None:
    s = result.summary
    print(f"people's verdicts: {s['matched_labels']} of {s['exported_labels']} exported labels matched "
          f"{s['pairs']}")
    conf = f"{s['confidence']:.0%} CI"
    print(f"{'policy':<28} {'win rate':>8} {conf:>18} {'W/T/L':>11} {'prompts':>7}")
    for p in s["policies"]:
        ci = f"[{p['win_rate_ci'][0]:.3f}, {p['win_rate_ci'][1]:.3f}]"
        print(f"{p['name'][-28:]:<28} {p['win_rate']:>8.3f} {ci:>18} {p['wins']:>4}/{p['ties']}/{p['losses']:<4} "
              f"{p['prompts']:>7}")
    print(f"results: {result.path}")


def write_people_pairs(path: Path, samples: list, prompts: list, n: int, seed: int) -> int:
    """``people_pairs.jsonl`` for every policy (``samples[0]`` is the baseline's), written atomically."""
    from rlhfkit.utils.io import atomic_write_jsonl

    rows: list[Any] = []
    for i, s in enumerate(samples[1:], start=1):
        rows += people_pair_rows(i, s.name, prompts, s.texts, samples[0].texts, n, seed)
    return atomic_write_jsonl(path, rows)
