"""Deliveries remember the upload limit of the interaction that asked.

Discord tells each interaction how large an attachment may be (``attachment_size_limit``, which
depends on the guild's boost level); a result delivered after a restart still needs it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:51:24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_limit", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("upload_limit")
