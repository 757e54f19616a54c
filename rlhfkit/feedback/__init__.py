"""The feedback studio: a web app that collects human feedback for the reward stage (SPEC 3).

Modules: ``app`` (FastAPI factory), ``pages`` / ``api`` (HTML and JSON routes), ``web`` (auth and
CSRF helpers), ``security`` (signed cookies), ``db`` / ``models`` / ``migrations`` (SQLite or
PostgreSQL through SQLAlchemy + Alembic), ``service`` (projects, assignments, labels),
``tasks`` (the task types), ``ingest`` / ``generate`` (items from files or a model),
``quality`` (agreement, aggregation, gold screening), ``report``, ``export`` (rlhfkit records),
``interop`` (Label Studio / Argilla), ``cli`` (``rlhfkit studio ...``).

Importing this package imports none of FastAPI, SQLAlchemy or torch; ``quality`` is pure Python.
"""

# what annotators do: compare two answers, rank k, score 1-7, critique, thumbs up/down on one
# answer, or mark each step of an answer good / neutral / bad (rules per type: ``tasks``)
TASK_TYPES = ("pairwise", "ranking", "score", "critique", "binary", "steps")
