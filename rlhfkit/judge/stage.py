"""``rlhfkit judge``: an AI judge labels preference pairs (RLAIF).

Recipe: setup (judge from config) -> read pairs (or a studio project's items) -> judge both orders
-> write ``verdicts.jsonl`` (every pair: probabilities per order, status, consistency, kept),
``judged_pairs.jsonl`` (the kept verdicts as preference pairs, chosen = the judge's pick, label = its
P(chosen better): soft labels for the reward stage or DPO) and ``summary.json`` -> print the summary
(position-inconsistency share, unparseable/refused counts, accuracy vs the file's labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.judge.config import JudgeConfig  # noqa: F401  (the CLI reads the config class here)

VERDICTS_FILE = "verdicts.jsonl"
PAIRS_FILE = "judged_pairs.jsonl"
SUMMARY_FILE = "summary.json"
CACHE_DIR = "http_cache"


@dataclass
class JudgeRunResult:
    output_dir: Path
    summary: Any  # JudgeSummary
    seconds: float
    studio: Any = None  # StudioJudgeResult when a studio project was judged
    http_stats: Any = None


def build_prompt(cfg: JudgeConfig):
    from rlhfkit.judge.prompts import DEFAULT_PRINCIPLE, JudgePrompt, load_few_shot, load_principles

    p = cfg.prompt
    principles = (load_principles(p.principles_file) if p.principles_file
                  else (p.principle or DEFAULT_PRINCIPLE,))
    few_shot = load_few_shot(p.few_shot_file, limit=p.few_shot) if p.few_shot_file and p.few_shot else ()
    return JudgePrompt(principles=principles, few_shot=few_shot, reasoning=p.reasoning, system=p.system,
                       max_chars=p.max_chars)


def build_judge(cfg: JudgeConfig, output_dir: str | Path | None = None):
    """The Judge a config describes (other stages, e.g. a constitution or a round, build theirs here)."""
    from rlhfkit.judge.judge import Judge

    if cfg.backend == "http":
        from rlhfkit.judge.http import HTTPBackend

        cache = cfg.http.cache_dir or (str(Path(output_dir) / CACHE_DIR) if output_dir else "")
        backend = HTTPBackend(cfg.http, cfg.model, reasoning=cfg.prompt.reasoning,
                              cache_dir=None if cache in ("", "none") else cache)
    else:
        from rlhfkit.judge.local import LocalBackend
        from rlhfkit.run import resolve_device

        backend = LocalBackend.load(cfg.model, dtype=cfg.dtype, device=resolve_device(cfg.device),
                                    batch_size=cfg.batch_size, share_prefix=cfg.share_prefix)
    return Judge(backend, build_prompt(cfg), min_confidence=cfg.min_confidence)


def run(cfg: JudgeConfig) -> JudgeRunResult:
    from rlhfkit.run import prepare_output, say, warn

    out = prepare_output(cfg, cfg.output_dir)
    pairs = None if cfg.studio_project else _read_pairs(cfg)  # data errors before the model loads
    judge = build_judge(cfg, out)
    start = time.perf_counter()
    try:
        if cfg.studio_project:
            studio, pairs, verdicts = _judge_studio(cfg, judge)
        else:
            studio = None
            say(f"judging {len(pairs)} pairs in both orders with {judge.annotator}")
            verdicts = judge.compare_many(pairs, progress=lambda n: say(f"  {n}/{len(pairs)} pairs judged"))
    finally:
        if hasattr(judge.backend, "close"):
            judge.backend.close()
    seconds = time.perf_counter() - start
    n_cut = sum("truncated" in v.meta for v in verdicts)
    if n_cut:
        warn(f"{n_cut} of {len(verdicts)} pairs had a response or the conversation cut at "
             f"prompt.max_chars={cfg.prompt.max_chars} (marked truncated in verdicts.jsonl)")
    summary = judge.summary(verdicts)
    _write_outputs(out, judge, pairs, verdicts, summary, seconds)
    return JudgeRunResult(out, summary, seconds, studio, getattr(judge.backend, "stats", None))


def _read_pairs(cfg: JudgeConfig) -> list:
    from rlhfkit.config import ConfigError
    from rlhfkit.data.sources import load
    from rlhfkit.judge.judge import as_judge_pair
    from rlhfkit.run import say

    result = load(cfg.pairs, "pairs", limit=cfg.max_pairs or None)
    say(result.report())
    if not result.records:
        raise ConfigError(f"pairs: {cfg.pairs}: no usable preference pairs")
    return [as_judge_pair(p) for p in result.records]


def _judge_studio(cfg: JudgeConfig, judge) -> tuple:
    import os

    from rlhfkit.config import ConfigError
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.service import StudioError
    from rlhfkit.judge.judge import JudgePair
    from rlhfkit.judge.studio import judge_project
    from rlhfkit.run import say

    db = open_database(cfg.studio_db or os.environ.get("RLHFKIT_STUDIO_DB", "studio.sqlite3"))
    try:
        result = judge_project(db, cfg.studio_project, judge)
    except StudioError as err:
        raise ConfigError(f"studio_project={cfg.studio_project}: {err.message}") from None
    finally:
        db.close()
    say(f"studio project {result.project}: {result.stored} labels stored as {result.annotator} "
        f"({result.already} items labelled before)")
    pairs = [JudgePair((), "", "", meta=v.meta) for v in result.verdicts]  # the items live in the studio
    return result, pairs, result.verdicts


def _write_outputs(out: Path, judge, pairs: list, verdicts: list, summary, seconds: float) -> None:
    from rlhfkit.data.readers import write_records
    from rlhfkit.data.records import conversation_to_json
    from rlhfkit.judge.judge import verdict_to_pair
    from rlhfkit.utils.io import atomic_write_jsonl, write_json

    kept = judge.kept(verdicts)
    rows = []
    for i, (pair, v, k) in enumerate(zip(pairs, verdicts, kept)):
        row = {"index": i, **v.to_json(), "kept": k}
        if pair.response_a:
            row.update(prompt=conversation_to_json(pair.prompt), response_a=pair.response_a,
                       response_b=pair.response_b)
        rows.append(row)
    atomic_write_jsonl(out / VERDICTS_FILE, rows)
    labelled = [verdict_to_pair(p, v, judge.annotator) for p, v, k in zip(pairs, verdicts, kept)
                if k and p.response_a]
    write_records(out / PAIRS_FILE, [p for p in labelled if p is not None])
    write_json(out / SUMMARY_FILE, {"judge": judge.annotator, **summary.to_json(),
                                    "seconds": round(seconds, 2),
                                    "pairs_per_s": round(len(verdicts) / seconds, 3) if seconds else None})


def report(result: JudgeRunResult) -> None:
    for line in result.summary.lines():
        print(line)
    if result.http_stats is not None:
        s = result.http_stats
        print(f"http: {s.requests} requests, {s.cache_hits} from the cache, {s.retries} retries")
    print(f"verdicts: {result.output_dir / VERDICTS_FILE}")
    print(f"judged pairs (soft labels): {result.output_dir / PAIRS_FILE}")
