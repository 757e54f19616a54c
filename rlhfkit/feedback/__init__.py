"""The feedback studio: a web app that collects human feedback for the reward stage (SPEC 3).

Modules: ``app`` (FastAPI factory), ``pages`` / ``api`` (HTML and JSON routes), ``web`` (auth and
CSRF helpers), ``security`` (signed cookies), ``db`` / ``models`` / ``migrations`` (SQLite or
PostgreSQL through SQLAlchemy + Alembic), ``service`` (projects, assignments, labels),
``tasks`` (the four task types), ``ingest`` / ``generate`` (items from files or a model),
``quality`` (agreement, aggregation, gold screening), ``report``, ``export`` (rlhfkit records),
``interop`` (Label Studio / Argilla), ``cli`` (``rlhfkit studio ...``).

Importing this package imports none of FastAPI, SQLAlchemy or torch; ``quality`` is pure Python.
"""
