"""Hardening: project archive flag and task time limit, token expiry and session versions, one open
assignment per annotator and project, label revision history.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN_ONLY = sa.text("NOT done")


def upgrade() -> None:
    # plain ADD COLUMN (a batch copy of the table would cascade-delete its children on SQLite)
    op.add_column("projects", sa.Column("archived", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column("projects", sa.Column("assignment_minutes", sa.Integer(), nullable=False,
                                        server_default=sa.text("60")))
    op.add_column("annotators", sa.Column("token_expires_at", sa.DateTime(), nullable=True))
    op.add_column("annotators", sa.Column("session_version", sa.Integer(), nullable=False,
                                          server_default=sa.text("0")))
    op.add_column("labels", sa.Column("revised_at", sa.DateTime(), nullable=True))
    # concurrent `next` requests could open several tasks for one annotator: keep the oldest
    op.execute("DELETE FROM assignments WHERE NOT done AND id NOT IN ("
               "SELECT MIN(id) FROM assignments WHERE NOT done GROUP BY project_id, annotator_id)")
    op.create_index("uq_assignment_open", "assignments", ["project_id", "annotator_id"], unique=True,
                    sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY)
    op.create_table(
        "label_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("label_id", sa.Integer(), sa.ForeignKey("labels.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("value_json", sa.Text(), nullable=False),
        sa.Column("display_choice", sa.String(8), nullable=True),
        sa.Column("given_at", sa.DateTime(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_label_history_label_id", "label_history", ["label_id"])


def downgrade() -> None:
    op.drop_table("label_history")
    op.drop_index("uq_assignment_open", table_name="assignments")
    for table, column in (("labels", "revised_at"), ("annotators", "session_version"),
                          ("annotators", "token_expires_at"), ("projects", "assignment_minutes"),
                          ("projects", "archived")):
        op.drop_column(table, column)  # ALTER TABLE DROP COLUMN (SQLite >= 3.35)
