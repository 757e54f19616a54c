"""Initial studio schema: settings, projects, items, annotators, assignments, labels.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        sa.Column("gold_threshold", sa.Float(), nullable=False),
        sa.Column("min_gold", sa.Integer(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("prompt_json", sa.Text(), nullable=False),
        sa.Column("candidates_json", sa.Text(), nullable=False),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_json", sa.Text(), nullable=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_items_project_id", "items", ["project_id"])
    op.create_table(
        "annotators",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("annotator_id", sa.Integer(),
                  sa.ForeignKey("annotators.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("order_json", sa.Text(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("item_id", "annotator_id", name="uq_assignment_item_annotator"),
        sa.UniqueConstraint("item_id", "slot", name="uq_assignment_item_slot"),
    )
    op.create_index("ix_assignments_item_id", "assignments", ["item_id"])
    op.create_index("ix_assignment_project_annotator", "assignments",
                    ["project_id", "annotator_id", "done"])
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment_id", sa.Integer(),
                  sa.ForeignKey("assignments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("annotator_id", sa.Integer(),
                  sa.ForeignKey("annotators.id", ondelete="CASCADE"), nullable=False),
        sa.Column("value_json", sa.Text(), nullable=False),
        sa.Column("display_choice", sa.String(8), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("assignment_id", name="uq_label_assignment"),
        sa.UniqueConstraint("item_id", "annotator_id", name="uq_label_item_annotator"),
    )
    op.create_index("ix_label_project", "labels", ["project_id"])


def downgrade() -> None:
    for table in ("labels", "assignments", "annotators", "items", "projects", "settings"):
        op.drop_table(table)
