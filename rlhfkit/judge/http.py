"""Backend (b): any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, a hosted API).

Per order one ``POST {base_url}/chat/completions`` at temperature 0. The reply is parsed
(:func:`rlhfkit.judge.verdict.parse_verdict`); when the server returns log-probabilities, the soft
label comes from those of the choice token (the last `` A``/`` B`` token of the reply, with the
alternatives in its ``top_logprobs``), else the parsed verdict is the (hard) label.

Operational rules:
* the API key comes from the environment variable named by ``api_key_env`` (never from a file);
* each request has a timeout; 429, 5xx, timeouts and connection errors are retried with exponential
  backoff (``backoff * 2**attempt`` seconds, or the server's ``Retry-After``, at most ``max_backoff``);
  other 4xx fail at once with one line;
* at most ``concurrency`` requests are in flight;
* successful replies are cached on disk under the SHA-256 of the full request (URL + body), so a
  rerun never pays twice; ``stats`` counts network requests, cache hits and retries.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rlhfkit.errors import RlhfkitError
from rlhfkit.judge.config import JudgeHTTPConfig
from rlhfkit.judge.prompts import JudgeMessages
from rlhfkit.judge.verdict import OrderResult, choice_probability, parse_verdict, soft_label

RETRY_STATUS = (408, 409, 425, 429)  # plus every 5xx


class JudgeHTTPError(RlhfkitError, RuntimeError):
    """The endpoint could not answer; the message names the config key to check."""


@dataclass
class HTTPStats:
    requests: int = 0  # sent over the network (retries included)
    cache_hits: int = 0
    retries: int = 0
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class HTTPBackend:
    """``settings``: the ``http`` config group; ``model``: the served model's name; ``cache_dir``:
    where replies are cached (None = no cache); ``transport``: an httpx transport (None = network)."""

    def __init__(self, settings: JudgeHTTPConfig, model: str, reasoning: bool = False,
                 cache_dir: str | None = None, transport: Any = None):
        self.settings, self.model, self.reasoning, self.cache_dir = settings, model, reasoning, cache_dir
        self.name = model
        self.stats = HTTPStats()
        self._transport = transport  # an httpx transport (tests); None = the network
        self._client = None

    # ---- the backend contract ----------------------------------------------------------------------

    def judge(self, jobs: Sequence[tuple[JudgeMessages, JudgeMessages]]) -> list[tuple[OrderResult, OrderResult]]:
        from concurrent.futures import ThreadPoolExecutor

        bodies = [self.body(m) for job in jobs for m in job]
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            replies = list(pool.map(self.complete, bodies))
        results = [reply_to_result(r) for r in replies]
        return [(results[2 * i], results[2 * i + 1]) for i in range(len(jobs))]

    def body(self, messages: JudgeMessages) -> dict:
        s = self.settings
        body = {"model": self.model, "messages": messages.chat(), "temperature": 0.0,
                "max_tokens": s.max_tokens if self.reasoning else 8}
        if s.logprobs:
            body.update(logprobs=True, top_logprobs=s.top_logprobs)
        return body

    # ---- one request: cache, then the network with retries ----------------------------------------

    @property
    def url(self) -> str:
        return self.settings.base_url.rstrip("/") + "/chat/completions"

    def cache_path(self, body: dict) -> Path | None:
        if not self.cache_dir:
            return None
        key = hashlib.sha256(json.dumps({"url": self.url, "body": body}, sort_keys=True,
                                        ensure_ascii=False).encode("utf-8")).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.json"

    def complete(self, body: dict) -> dict:
        path = self.cache_path(body)
        if path is not None and path.exists():
            self.stats.add("cache_hits")
            return json.loads(path.read_text(encoding="utf-8"))
        reply = self._send(body)
        if path is not None:
            from rlhfkit.utils.io import write_json

            write_json(path, reply)
        return reply

    def _send(self, body: dict) -> dict:
        import httpx

        s = self.settings
        for attempt in range(s.max_retries + 1):
            wait = min(s.backoff * 2 ** attempt, s.max_backoff)
            try:
                self.stats.add("requests")
                response = self.client().post(self.url, json=body, headers=self._headers())
            except (httpx.TimeoutException, httpx.TransportError) as err:
                problem = f"{type(err).__name__} ({err or 'no detail'})"
            else:
                if response.status_code == 200:
                    return _json(response, self.url)
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    raise JudgeHTTPError(self._client_error(response))
                problem = f"HTTP {response.status_code}"
                wait = min(_retry_after(response) or wait, s.max_backoff)
            if attempt == s.max_retries:
                raise JudgeHTTPError(f"http.base_url={s.base_url}: {problem} after {attempt + 1} attempts")
            self.stats.add("retries")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def client(self):
        import httpx

        if self._client is None:
            limits = httpx.Limits(max_connections=max(1, self.settings.concurrency))
            self._client = httpx.Client(timeout=self.settings.timeout, limits=limits,
                                        transport=self._transport)
        return self._client

    def _headers(self) -> dict:
        key = os.environ.get(self.settings.api_key_env, "") if self.settings.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _client_error(self, response) -> str:
        s, code = self.settings, response.status_code
        detail = response.text.strip().replace("\n", " ")[:200]
        if code in (401, 403):
            return (f"http.api_key_env={s.api_key_env}: the server refused the key (HTTP {code}); "
                    f"set ${s.api_key_env} to a valid key: {detail}")
        if code == 404:
            return f"http.base_url={s.base_url}: {self.url} not found (HTTP 404; the URL usually ends in /v1)"
        return f"model={self.model}: the server rejected the request (HTTP {code}): {detail}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _json(response, url: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise JudgeHTTPError(f"http.base_url: {url} answered with something that is not JSON") from None
    if not isinstance(data, dict) or not data.get("choices"):
        raise JudgeHTTPError(f"http.base_url: {url} answered without choices (not a chat-completions API?)")
    return data


def _retry_after(response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# a reply -> the probability that the first-shown response is better


def reply_to_result(reply: dict) -> OrderResult:
    choice = reply["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    verdict, status = parse_verdict(text)
    if status != "ok":
        return OrderResult(None, status, "none", text)
    if verdict != "tie":
        p = choice_token_probability(logprob_tokens(choice.get("logprobs")), verdict)
        if p is not None:
            return OrderResult(p, "ok", "logprobs", text)
    return OrderResult(choice_probability(verdict), "ok", "parsed", text)


def logprob_tokens(logprobs: Any) -> list:
    """A reply's ``logprobs`` as ``[{"token", "top_logprobs": [{"token", "logprob"}]}]``: the chat format
    (``{"content": [...]}``) as is, the legacy completions format that some servers return for chat too
    (``{"tokens": [...], "top_logprobs": [{token: logprob}, ...]}``, llama-cpp-python) converted."""
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):
        return logprobs["content"]
    tokens, tops = logprobs.get("tokens") or [], logprobs.get("top_logprobs") or []
    return [{"token": t, "top_logprobs": [{"token": k, "logprob": v} for k, v in (top or {}).items()]}
            for t, top in zip(tokens, tops)]


def choice_token_probability(tokens: list, verdict: str) -> float | None:
    """P(A) from the log-probabilities at the reply's last choice token, when that token is the parsed
    ``verdict`` and both letters are among its top log-probabilities (variants such as "A" and " A"
    summed); None otherwise (the caller falls back to the parsed verdict)."""
    at = [i for i, t in enumerate(tokens) if str(t.get("token", "")).strip() in ("A", "B")]
    if not at or str(tokens[at[-1]]["token"]).strip() != verdict:
        return None
    mass = {"A": [], "B": []}
    for alt in tokens[at[-1]].get("top_logprobs") or []:
        letter = str(alt.get("token", "")).strip()
        if letter in mass and isinstance(alt.get("logprob"), (int, float)):
            mass[letter].append(float(alt["logprob"]))
    if not mass["A"] or not mass["B"]:
        return None
    return soft_label(_logsumexp(mass["A"]), _logsumexp(mass["B"]))


def _logsumexp(xs: list) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))
