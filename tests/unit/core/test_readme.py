"""The README's two set-up commands come first, and CI runs the second one verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line.strip()]


def test_readme_opens_with_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("rlhfkit pipeline")
    assert "pytest" in commands[1]
    assert "torch" not in commands[0] or "torch==2.13.0" in commands[0]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_torch_is_pinned():
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
