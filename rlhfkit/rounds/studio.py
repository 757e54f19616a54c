"""People label a round in the studio: the round's selected pairs become a pairwise project
(``<prefix>-round-<r>``) created through the studio's service layer; each run of ``rlhfkit rounds``
reports how many are labelled, and once every pair has ``studio.overlap`` labels the studio's export
(majority or Dawid-Skene, soft: the winning side's vote share or posterior as the label) gives the
round's preference pairs. Until then the label step is not finished: the command stops and asks to
be rerun, which picks up at this step."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from rlhfkit.config import opt


@dataclass
class StudioLabels:
    db: str = opt("", "studio database (SQLite path or URL; '' = $RLHFKIT_STUDIO_DB or studio.sqlite3)")
    project: str = opt("", "project name prefix: round r is the pairwise project <prefix>-round-<r> "
                           "('' = the run folder's name)")
    overlap: int = opt(1, "people per pair; the round goes on when every pair has this many labels")
    method: Literal["majority", "dawid-skene"] = opt("majority", "how several people's labels of a pair "
                                                                 "become one (soft: the share or posterior)")
    instructions: str = opt("Which response is better? Choose 'about the same' when neither is.",
                            "shown to the people labelling")

    def validate(self) -> None:
        if self.overlap < 1:
            raise ValueError("overlap must be >= 1")


class WaitingForLabels(Exception):
    """The round's studio project is not fully labelled yet (the message says how far it is)."""


@dataclass
class StudioProgress:
    project: str
    items: int
    labelled: int  # items with at least ``overlap`` labels
    labels: int


def project_name(cfg: Any, run_dir: Any, r: int) -> str:
    return f"{cfg.studio.project or run_dir.resolve().name}-round-{r}"


def open_studio(cfg: Any):
    from rlhfkit.feedback.db import open_database

    return open_database(cfg.studio.db or os.environ.get("RLHFKIT_STUDIO_DB", "studio.sqlite3"))


def ensure_project(db: Any, name: str, pairs: list, s: StudioLabels) -> bool:
    """Create the round's project with one item per pair unless it exists; True when created."""
    from rlhfkit.feedback.ingest import ItemSpec
    from rlhfkit.feedback.service import NotFound, create_project, project_info

    try:
        project_info(db, name)
        return False
    except NotFound:
        items = [ItemSpec(p.prompt, [p.response_a, p.response_b], source=f"pair {k}") for k, p in enumerate(pairs)]
        create_project(db, name, "pairwise", overlap=s.overlap, gold_rate=0.0, instructions=s.instructions,
                       items=items)
        return True


def progress(db: Any, name: str, overlap: int) -> StudioProgress:
    from collections import Counter

    from rlhfkit.feedback.report import load_project

    _info, items, labels = load_project(db, name)
    per_item = Counter(lab.item_id for lab in labels)
    return StudioProgress(name, len(items), sum(per_item[it.item_id] >= overlap for it in items), len(labels))


def studio_labels(cfg: Any, run_dir: Any, r: int, pairs: list) -> tuple[list, StudioProgress]:
    """The round's labelled pairs once every item has ``overlap`` labels; else WaitingForLabels."""
    from rlhfkit.feedback.export import export_records

    name = project_name(cfg, run_dir, r)
    db = open_studio(cfg)
    try:
        created = ensure_project(db, name, pairs, cfg.studio)
        p = progress(db, name, cfg.studio.overlap)
        if p.labelled < p.items:
            where = "created" if created else "waiting"
            raise WaitingForLabels(
                f"round {r}: studio project {name!r} ({where}): {p.labelled} of {p.items} pairs labelled by "
                f"{cfg.studio.overlap} people ({p.labels} labels so far); label them in the studio "
                "(rlhfkit studio serve), then rerun this command: it continues here")
        records = export_records(db, name, method=cfg.studio.method, soft=True, min_labels=cfg.studio.overlap)
    finally:
        db.close()
    return records, p
