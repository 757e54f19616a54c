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
    for command in commands:  # the tested torch first, so pip never picks a CUDA build for the range
        assert command.index("pip install -q torch==2.13.0") < command.index("pip install -q -e")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_torch_is_a_range_that_admits_the_tested_version():
    import re

    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    spec = Requirement(re.search(r'"(torch[^"]*)"', text).group(1)).specifier
    assert "==" not in str(spec), "a pin would replace a CUDA torch with the CPU build on GPU machines"
    assert spec.contains("2.13.0") and not spec.contains("1.13.0")
