"""The HTTP backend's own logic against httpx's in-process transport: reply parsing, choice-token
log-probabilities, retries with backoff, the on-disk cache, one-line errors. The real-server test is
tests/integration/test_judge_llama_server.py."""

import json
import math

import pytest

httpx = pytest.importorskip("httpx")

from rlhfkit.judge.config import JudgeHTTPConfig  # noqa: E402
from rlhfkit.judge.http import HTTPBackend, JudgeHTTPError, choice_token_probability, reply_to_result  # noqa: E402
from rlhfkit.judge.judge import Judge  # noqa: E402
from rlhfkit.judge.prompts import JudgePrompt  # noqa: E402


def _tok(token, logprob=0.0, top=()):
    return {"token": token, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}


def _reply(text, tokens=None):
    choice = {"message": {"role": "assistant", "content": text}}
    if tokens is not None:
        choice["logprobs"] = {"content": tokens}
    return {"choices": [choice]}


def test_choice_token_probability_sums_variants_of_each_letter():
    tokens = [_tok("Ver"), _tok("dict"), _tok(":"),
              _tok(" A", math.log(0.6), [(" A", math.log(0.6)), (" B", math.log(0.25)), ("A", math.log(0.15))])]
    # P(A) = (0.6 + 0.15) / (0.6 + 0.15 + 0.25) = 0.75
    assert choice_token_probability(tokens, "A") == pytest.approx(0.75)
    assert choice_token_probability(tokens, "B") is None  # the sampled token is not the parsed verdict
    only_a = [_tok(" A", -0.01, [(" A", -0.01), (" C", -5.0)])]
    assert choice_token_probability(only_a, "A") is None  # B not among the alternatives: no soft label


def test_reply_to_result_prefers_logprobs_then_the_parsed_verdict():
    tokens = [_tok(" B", math.log(0.8), [(" B", math.log(0.8)), (" A", math.log(0.2))])]
    r = reply_to_result(_reply("Verdict: B", tokens))
    assert (r.status, r.source) == ("ok", "logprobs") and r.p_first == pytest.approx(0.2)
    r = reply_to_result(_reply("Verdict: B"))
    assert (r.p_first, r.source) == (0.0, "parsed")
    r = reply_to_result(_reply("I'm sorry, I can't judge this."))
    assert (r.p_first, r.status, r.source) == (None, "refused", "none")


def _backend(handler, tmp_path=None, **kw):
    settings = JudgeHTTPConfig(base_url="http://judge.test/v1", backoff=0.0, api_key_env="RLHFKIT_TEST_KEY", **kw)
    return HTTPBackend(settings, "m", cache_dir=str(tmp_path / "cache") if tmp_path else None,
                       transport=httpx.MockTransport(handler))


def test_retries_on_429_and_5xx_then_succeeds(monkeypatch):
    monkeypatch.setenv("RLHFKIT_TEST_KEY", "sekret")
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"retry-after": "0"})
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, json=_reply("Verdict: A"))

    backend = _backend(handler, max_retries=3)
    reply = backend.complete({"model": "m", "messages": []})
    assert reply["choices"][0]["message"]["content"] == "Verdict: A"
    assert (backend.stats.requests, backend.stats.retries) == (3, 2)
    assert calls[-1].headers["authorization"] == "Bearer sekret"
    assert str(calls[-1].url) == "http://judge.test/v1/chat/completions"


def test_gives_up_after_max_retries_with_one_line():
    backend = _backend(lambda request: httpx.Response(500), max_retries=2)
    with pytest.raises(JudgeHTTPError, match=r"http.base_url=http://judge.test/v1: HTTP 500 after 3 attempts"):
        backend.complete({"x": 1})
    assert backend.stats.requests == 3


def test_timeouts_are_retried():
    n = []

    def handler(request):
        n.append(1)
        if len(n) < 2:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=_reply("B"))

    backend = _backend(handler, max_retries=1)
    assert backend.complete({"x": 1})["choices"][0]["message"]["content"] == "B"


def test_a_refused_key_fails_at_once_naming_the_env_var():
    backend = _backend(lambda request: httpx.Response(401, text="bad key"), max_retries=3)
    with pytest.raises(JudgeHTTPError, match="http.api_key_env=RLHFKIT_TEST_KEY"):
        backend.complete({"x": 1})
    assert backend.stats.requests == 1


def test_cache_means_a_rerun_sends_nothing(tmp_path):
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append(body)
        first = body["messages"][-1]["content"].split("Response A:\n")[1].split("\n")[0]
        return httpx.Response(200, json=_reply("Verdict: A" if first == "long answer" else "Verdict: B"))

    pairs = [("q", "long answer", "short")]
    verdicts = Judge(_backend(handler, tmp_path), JudgePrompt()).compare_many(pairs)
    assert len(seen) == 2 and seen[0]["temperature"] == 0.0 and seen[0]["logprobs"] is True
    # A first -> "A" (P(A) = 1); B first -> "B" (P(first) = 0, so P(A) = 1): consistent, prob 1
    assert (verdicts[0].prob, verdicts[0].consistent, verdicts[0].sources) == (1.0, True, ("parsed", "parsed"))
    again = _backend(handler, tmp_path)
    assert Judge(again, JudgePrompt()).compare_many(pairs)[0].prob == 1.0
    assert len(seen) == 2 and (again.stats.requests, again.stats.cache_hits) == (0, 2)


def test_legacy_logprobs_format_is_read_too():
    # llama-cpp-python's server answers chat requests with the completions-style logprobs
    legacy = {"tokens": ["Verdict", ":", " A"], "token_logprobs": [-0.1, -0.1, math.log(0.3)],
              "top_logprobs": [{"Verdict": -0.1}, {":": -0.1}, {" A": math.log(0.3), " B": math.log(0.1)}]}
    reply = {"choices": [{"message": {"content": "Verdict: A"}, "logprobs": legacy}]}
    r = reply_to_result(reply)
    assert r.source == "logprobs" and r.p_first == pytest.approx(0.75)
