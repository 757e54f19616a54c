"""Binary and step-level feedback: the steps of a step-labelling item, fixed when it is created.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("steps_json", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "steps_json")  # ALTER TABLE DROP COLUMN (SQLite >= 3.35)
