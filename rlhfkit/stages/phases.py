"""The state of a command made of phases run once each (``rlhfkit constitution``; ``rlhfkit rounds``
keeps its round-by-step state in rlhfkit/rounds/state.py):
``state.json`` in the run folder records each finished phase with the config values it depended on
and what it wrote, so a rerun skips it, and refuses to reuse it when those values changed.

    state = PhaseState.load(out)
    state.check({name: pick_keys(cfg, keys) for name, keys in phase_keys.items()})
    if not state.done("revise"):
        outputs = revise(...)                               # paths relative to the run folder
        state.finish("revise", pick_keys(cfg, keys["revise"]), outputs, seconds)   # atomic write
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

STATE_FILE = "state.json"


def pick_keys(cfg: Any, keys: Iterable[str]) -> dict:
    """``{dotted key: value}`` of a config dataclass (a group's value is its whole mapping)."""
    data = dataclasses.asdict(cfg)
    out = {}
    for key in keys:
        node = data
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return json.loads(json.dumps(out))  # as state.json stores it (lists, not tuples)


def changed_keys(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every value that differs; inside a group, the logging and run-length
    keys a resumed training stage may change are free (:func:`rlhfkit.run.config_changes`)."""
    from rlhfkit.run import config_changes

    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{change}" for change in config_changes(a, b)]
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


@dataclass
class PhaseState:
    path: Path
    phases: dict  # phase -> {"fingerprint": {key: value}, "outputs": {...}, "seconds": float}

    @classmethod
    def load(cls, out: Path) -> "PhaseState":
        from rlhfkit.config import ConfigError

        path = Path(out) / STATE_FILE
        if not path.exists():
            return cls(path, {})
        try:
            return cls(path, dict(json.loads(path.read_text())["phases"]))
        except (ValueError, KeyError, TypeError) as err:
            why = f"unreadable run state ({err}): delete it to redo every phase"
            raise ConfigError(f"{path}: {why}") from None

    def done(self, phase: str) -> bool:
        return phase in self.phases

    def check(self, fingerprints: dict) -> None:
        """Refuse a rerun whose settings (``fingerprints[phase]``, as :func:`pick_keys` makes them)
        changed for a phase that already finished: its outputs would silently not match them."""
        from rlhfkit.config import ConfigError

        for phase, entry in self.phases.items():
            changes = changed_keys(entry["fingerprint"], fingerprints.get(phase, {}))
            if changes:
                raise ConfigError(
                    f"output_dir={self.path.parent}: phase {phase} finished with other settings "
                    f"({'; '.join(changes[:4])}): use a new output_dir, or delete the folder to start over")

    def finish(self, phase: str, fingerprint: dict, outputs: dict, seconds: float) -> None:
        """Record a finished phase (state.json is replaced atomically)."""
        from rlhfkit.utils.io import write_json

        self.phases[phase] = {"fingerprint": fingerprint, "outputs": outputs, "seconds": round(seconds, 1)}
        write_json(self.path, {"phases": self.phases})

    def output(self, phase: str, key: str) -> Any:
        return self.phases[phase]["outputs"][key]
