"""Every module imports; light modules stay light; no undefined names anywhere (ruff F821/F811)."""

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rlhfkit

ROOT = Path(__file__).resolve().parents[3]


def all_modules():
    for info in pkgutil.walk_packages(rlhfkit.__path__, prefix="rlhfkit."):
        if ".migrations" not in info.name:
            yield info.name


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_module_imports(name):
    importlib.import_module(name)


@pytest.mark.parametrize("name", ["rlhfkit.data", "rlhfkit.config", "rlhfkit.cli", "rlhfkit.rewards",
                                  "rlhfkit.feedback.quality"])
def test_light_modules_do_not_import_heavy_engines(name):
    code = (f"import sys, {name}; heavy = [m for m in ('torch', 'transformers', 'ray', 'vllm') "
            f"if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{name} imports {out.stdout.strip()} at module level"


def test_no_undefined_names():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([ruff, "check", "--select", "F821,F811,F823,F841", "--quiet",
                          "rlhfkit", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
