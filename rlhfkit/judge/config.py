"""``rlhfkit judge`` config: which judge (a local causal LM or an OpenAI-compatible endpoint), its
prompt (principles, few-shot examples, reasoning), what it judges (a pairs file or a studio project)
and where the verdicts go. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt
from rlhfkit.judge.prompts import DEFAULT_SYSTEM


@dataclass
class JudgePromptConfig:
    principle: str = opt("", "the principle the judge applies ('' = more helpful, honest and harmless)")
    principles_file: str = opt("", "YAML list of principles (strings, or mappings with a 'principle' key, "
                                    "as in a constitution); all are shown to the judge")
    few_shot_file: str = opt("", "preference pairs (any pairs format) shown as worked examples, the "
                                 "chosen response alternately as A and B; a 'reasoning' key is shown too")
    few_shot: int = opt(2, "how many examples of few_shot_file to show")
    reasoning: bool = opt(False, "http backend: the judge explains before its 'Verdict: A/B' line (the "
                                 "local backend reads the verdict token's probability directly)")
    system: str = opt(DEFAULT_SYSTEM, "system message of the judge ('' = none)")
    max_chars: int = opt(4000, "each response, and the conversation (its end kept), cut to this many characters")

    def validate(self) -> None:
        if self.principle and self.principles_file:
            raise ValueError("set principle or principles_file, not both")
        if self.few_shot < 0 or self.max_chars < 1:
            raise ValueError("few_shot must be >= 0 and max_chars >= 1")


@dataclass
class JudgeHTTPConfig:
    base_url: str = opt("http://127.0.0.1:8080/v1", "OpenAI-compatible API root (vLLM, llama.cpp server, "
                                                    "a hosted API); requests go to <base_url>/chat/completions")
    api_key_env: str = opt("OPENAI_API_KEY", "name of the environment variable holding the API key "
                                             "(unset or empty = no Authorization header)")
    timeout: float = opt(60.0, "seconds per request")
    max_retries: int = opt(4, "retries on 429, 5xx, timeouts and connection errors")
    backoff: float = opt(1.0, "first retry wait in seconds, doubled each retry (or the server's Retry-After)")
    max_backoff: float = opt(30.0, "longest wait between retries, seconds")
    concurrency: int = opt(4, "requests in flight at once")
    cache_dir: str = opt("", "on-disk reply cache keyed by the full request ('' = <output_dir>/http_cache; "
                             "'none' = off): a rerun never pays twice")
    max_tokens: int = opt(256, "reply length limit with prompt.reasoning (8 without: 'Verdict: A')")
    logprobs: bool = opt(True, "ask for log-probabilities: the soft label then comes from the choice "
                               "token, else from the parsed verdict (0 or 1)")
    top_logprobs: int = opt(10, "alternatives per token returned with logprobs (both letters must be among them)")

    def validate(self) -> None:
        if self.max_retries < 0 or self.concurrency < 1 or self.timeout <= 0 or self.backoff < 0:
            raise ValueError("max_retries >= 0, concurrency >= 1, timeout > 0 and backoff >= 0 required")


@dataclass
class JudgeConfig:
    pairs: str = opt("demo:pairs", "preference pairs to judge (any format rlhfkit.data reads: pairs, HH "
                                   "transcripts); response A = chosen, so accuracy vs the labels is reported")
    max_pairs: int = opt(0, "judge at most this many pairs (0 = all)")
    backend: Literal["local", "http"] = opt("local", "local: a causal LM's choice-token probabilities; "
                                                     "http: an OpenAI-compatible chat endpoint")
    model: str = opt("default", "local: default, tiny or a Hugging Face folder; http: the served model name")
    dtype: str = opt("float32", "local backend: float32 (right on CPU), bfloat16, or auto")
    device: str = opt("auto", "local backend: auto (cuda when available), cpu or cuda")
    batch_size: int = opt(8, "local backend: pairs per forward pass (both orders of a pair in one row)")
    share_prefix: bool = opt(True, "local backend: compute the text before the first response once for "
                                   "both orders (false = two independent rows, the slower reference)")
    min_confidence: float = opt(0.0, "keep a pair only when the judge's averaged P(preferred) is at least "
                                     "this (0.5-1; 0 = keep every ok verdict)")
    output_dir: str = opt("runs/judge", "where verdicts.jsonl, judged_pairs.jsonl and summary.json go")
    studio_db: str = opt("", "studio database (SQLite path or URL; '' = $RLHFKIT_STUDIO_DB or "
                             "studio.sqlite3), used with studio_project")
    studio_project: str = opt("", "judge this pairwise studio project instead of the pairs file, and store "
                                  "the verdicts there as annotator ai:<model> (gold accuracy, kappa and "
                                  "Dawid-Skene then apply to the judge)")
    prompt: JudgePromptConfig = opt(factory=JudgePromptConfig, help="")
    http: JudgeHTTPConfig = opt(factory=JudgeHTTPConfig, help="")

    def validate(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in 0..1")
        if self.batch_size < 1 or self.max_pairs < 0:
            raise ValueError("batch_size must be >= 1 and max_pairs >= 0")
        if self.prompt.reasoning and self.backend == "local":
            raise ValueError("prompt.reasoning needs backend=http (the local backend reads the verdict "
                             "token's probability and generates nothing)")
