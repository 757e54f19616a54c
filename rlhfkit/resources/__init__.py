"""Data files shipped inside the package (``rlhfkit/resources/``).

``demo/`` holds a tiny demonstration data set written for rlhfkit (see ``demo/README.md``): one file
per feedback format, small enough for a 135M model to learn from in minutes on a CPU.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_FILES = ("sft.jsonl", "pairs.jsonl", "prompts.jsonl", "rankings.jsonl", "scores.jsonl",
              "language.jsonl")


def demo_path(name: str) -> Path:
    """Path of a demo file, e.g. ``demo_path("pairs.jsonl")``; MissingFileError (a FileNotFoundError) names the choices."""
    folder = resources.files(__name__).joinpath("demo")
    target = folder.joinpath(name)
    if not name or "/" in name or "\\" in name or not target.is_file():
        from rlhfkit.errors import MissingFileError

        raise MissingFileError(f"no demo file {name!r}; available: {', '.join(DEMO_FILES)}")
    return Path(str(target))
