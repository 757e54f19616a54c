"""``rlhfkit report``: one self-contained HTML file from a folder of runs (no model needed: the run
files are written here, the evaluation part through rlhfkit.eval's own functions)."""

import base64
import json
import os
from html.parser import HTMLParser
from types import SimpleNamespace

from tests.conftest import run_cli

EVIL = "<script>alert('x')</script> --------------------"


class Page(HTMLParser):
    """Collects tags with their attributes, heading texts and all text."""

    def __init__(self):
        super().__init__()
        self.tags, self.headings, self.text, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h2", "h3"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self.headings.append((self._in, data))


def _png():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.eval.plots import figure_png

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    return figure_png(fig)


def _eval_json(folder):
    from rlhfkit.eval.compare import compare_scores, policy_summary
    from rlhfkit.eval.diversity import CollapseThresholds

    texts = [["a b c", "d e f"], ["the same", "the same"]]
    sample = SimpleNamespace(name="runs/ppo", path="runs/ppo/final", texts=texts,
                             finished=[[True, True], [True, False]], embeddings=None, tokens_per_s=1.0, seconds=1.0)
    base = policy_summary(SimpleNamespace(**{**vars(sample), "name": "runs/sft"}), [[0, 0], [0, 0]],
                          CollapseThresholds(), None)
    pol = policy_summary(sample, [[1, 1], [0, 1]], CollapseThresholds(), base)
    pol.update(compare_scores([[1, 1], [0, 1]], [[0, 0], [0, 0]], [[3, 3], [2, 2]], [[3, 3], [2, 2]], n_boot=50))
    (folder / "eval.json").write_text(json.dumps({
        "baseline": base, "policies": [pol], "judge": "gold-rm", "prompts": 2, "samples_per_prompt": 2,
        "comparisons_per_policy": 8, "tie_eps": 0.0, "confidence": 0.95, "bootstrap": 50,
        "collapse_thresholds": {}}))
    rows = [{"policy": n, "policy_index": i, "prompt_index": 0, "sample": 0, "prompt": "What is 2+2?",
             "response": r, "score": s, "finished": True, "words": 1}
            for i, (n, r, s) in enumerate([("runs/sft", "Four.", 0.0), ("runs/ppo", "4, obviously", 1.0)])]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pol


def make_runs(root):
    """A pipeline-like folder: sft, ppo (with hacking warnings, a PNG and final/), eval; oldest first."""
    (root / "ppo" / "final").mkdir(parents=True)
    (root / "sft").mkdir()
    (root / "eval").mkdir()
    (root / "config.yaml").write_text("model: tiny\nsft:\n  data:\n    train: demo:sft\n")
    (root / "sft" / "config.yaml").write_text("model: tiny\n")
    (root / "sft" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 4.0 - s}) + "\n" for s in (1, 2, 3)) + json.dumps({"step": 3, "eval/loss": 1.5}))
    (root / "ppo" / "config.yaml").write_text("model: runs/sft/final\n")
    (root / "ppo" / "final" / "config.json").write_text("{}")
    (root / "ppo" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "score": 0.1 * s, "kl": 0.01 * s}) + "\n" for s in (1, 2)))
    (root / "ppo" / "hacking.jsonl").write_text(json.dumps(
        {"step": 2, "name": "special_chars", "message": "1 of 8 responses contain a run", "examples": [EVIL]}) + "\n")
    (root / "ppo" / "curves.png").write_bytes(_png())
    pol = _eval_json(root / "eval")
    for i, name in enumerate(["", "sft", "ppo", "eval"]):  # the order the runs were made
        for f in (root / name).iterdir():
            os.utime(f, (1_000_000 + i, 1_000_000 + i))
    return pol


def test_report_is_one_self_contained_page(tmp_path, capsys):
    pol = make_runs(tmp_path)
    assert run_cli("report", str(tmp_path)) == 0
    path = tmp_path / "report.html"
    assert str(path) in capsys.readouterr().out
    page = Page()
    page.feed(path.read_text())
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 3  # curves drawn from sft's and ppo's metrics.jsonl, and ppo's own curves.png
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(a["href"].startswith("#") for t, a in page.tags if t == "a")
    sections = [text for tag, text in page.headings if tag == "h2"]
    assert sections == [f"{tmp_path.name} (top folder)", "sft", "ppo (model in final/)", "eval"]
    text = "".join(page.text)
    assert EVIL in text  # shown as text, escaped: no script tag above
    assert "special_chars" in text and "data: demo:sft" in text
    assert f"{pol['win_rate']:.4g}" in text and "gold-rm" in text and "4, obviously" in text


def test_report_errors_are_one_line(tmp_path, capsys):
    assert run_cli("report", str(tmp_path / "missing")) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert run_cli("report", str(tmp_path / "empty")) == 2
    err = capsys.readouterr().err.strip()
    assert "no rlhfkit run here" in err and len(err.splitlines()) == 1


def test_an_unreadable_part_becomes_a_note(tmp_path):
    from rlhfkit.monitor.report import build_report

    (tmp_path / "eval.json").write_text(json.dumps({"baseline": {}}))  # not what rlhfkit eval writes
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    text = build_report(tmp_path).read_text()
    assert "eval: could not read this part" in text and "Training curves" in text
