"""The HTTP judge against a real OpenAI-compatible server on loopback: llama-cpp-python's server
serving the shipped SmolLM2-135M-Instruct GGUF (started by this module, stopped after it).

Skips when llama-cpp-python[server] is not installed (pip install 'llama-cpp-python[server]'; it
builds llama.cpp from source)."""

import json
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[judge-server]')")
pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra is not installed "
                                                   "(pip install -e '.[judge-server]')")
httpx = pytest.importorskip("httpx")

from tests.conftest import run_cli  # noqa: E402

STATUSES = {"ok", "unparseable", "refused"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from rlhfkit.models.loading import GGUF_FILE, ModelLoadError, _gguf_folder

    try:
        gguf = _gguf_folder() / GGUF_FILE
    except ModelLoadError as err:
        pytest.skip(str(err))
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
           "--logits_all", "true"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not come up in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge_cli_through_the_server_and_a_rerun_pays_nothing(server, tmp_path, capsys):
    args = ["judge", "backend=http", "model=smollm2", f"http.base_url={server}", "http.concurrency=2",
            "max_pairs=2", f"output_dir={tmp_path / 'j'}"]
    assert run_cli(*args) == 0
    first = capsys.readouterr().out
    assert "http: 4 requests, 0 from the cache, 0 retries" in first
    verdicts = rows(tmp_path / "j" / "verdicts.jsonl")
    assert len(verdicts) == 2 and all(v["status"] in STATUSES for v in verdicts)
    for v in verdicts:
        if v["status"] == "ok":
            assert 0.0 <= v["prob"] <= 1.0 and set(v["sources"]) <= {"logprobs", "parsed"}
        assert len(v["texts"]) == 2  # the two replies, kept for audit
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert summary["ok"] + summary["unparseable"] + summary["refused"] == 2
    assert run_cli(*args) == 0  # same requests: all from the on-disk cache
    assert "http: 0 requests, 4 from the cache" in capsys.readouterr().out
    assert rows(tmp_path / "j" / "verdicts.jsonl") == verdicts


def test_server_logprobs_give_a_soft_label(server):
    import math

    from rlhfkit.data.records import Message
    from rlhfkit.judge.config import JudgeHTTPConfig
    from rlhfkit.judge.http import HTTPBackend, logprob_tokens, reply_to_result
    from rlhfkit.judge.prompts import JudgePrompt

    backend = HTTPBackend(JudgeHTTPConfig(base_url=server), "smollm2")
    soft = 0
    for first, second in (("Paris.", "Berlin."), ("Berlin.", "Paris.")):
        m = JudgePrompt().messages((Message("user", "What is the capital of France?"),), first, second)
        reply = backend.complete(backend.body(m))
        tokens = logprob_tokens(reply["choices"][0].get("logprobs"))
        assert tokens and all(t["top_logprobs"] for t in tokens)  # the server returned log-probabilities
        result = reply_to_result(reply)
        assert result.status in STATUSES
        letters = [t for t in tokens if str(t["token"]).strip() in ("A", "B")]
        alts = {str(a["token"]).strip(): a["logprob"] for a in (letters[-1]["top_logprobs"] if letters else [])}
        if result.status == "ok" and "A" in alts and "B" in alts and len(alts) == len(letters[-1]["top_logprobs"]):
            # each letter once among the alternatives: P(A) = e^lA / (e^lA + e^lB), by hand
            assert result.source == "logprobs"
            expected = math.exp(alts["A"]) / (math.exp(alts["A"]) + math.exp(alts["B"]))
            assert result.p_first == pytest.approx(expected)
            soft += 1
    backend.close()
    print(f"{soft} of 2 replies carried a soft label")


def test_reasoning_replies_are_parsed_or_counted(server, tmp_path):
    args = ["judge", "backend=http", "model=smollm2", f"http.base_url={server}", "prompt.reasoning=true",
            "http.max_tokens=32", "max_pairs=1", f"output_dir={tmp_path / 'r'}"]
    assert run_cli(*args) == 0
    (v,) = rows(tmp_path / "r" / "verdicts.jsonl")
    assert v["status"] in STATUSES and len(v["texts"]) == 2 and all(v["texts"])
