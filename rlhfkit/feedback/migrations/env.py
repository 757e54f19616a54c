"""Alembic environment of the feedback studio.

Run by :func:`rlhfkit.feedback.db.upgrade`, which passes an open connection in
``config.attributes["connection"]``; run online only (the studio always has a live database).
"""

from alembic import context

from rlhfkit.feedback.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("the studio migrations are run through rlhfkit.feedback.db.upgrade()")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
