"""Project extracts and re-identification requests (issue 5).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_extracts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_code", sa.String(32), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provisioned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provisioned_by", sa.String(64), nullable=False),
        sa.Column("optouts_as_of", sa.Date, nullable=False),
        sa.Column("batches_json", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("excluded_rows", sa.BigInteger, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "reid_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("pseudonyms_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision_reason", sa.Text),
        sa.Column("resolved_by", sa.String(64)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_count", sa.Integer),
        sa.Column("output_path", sa.Text),
    )
    op.create_index("ix_reid_requests_project_code", "reid_requests", ["project_code"])


def downgrade() -> None:
    op.drop_index("ix_reid_requests_project_code", table_name="reid_requests")
    op.drop_table("reid_requests")
    op.drop_table("project_extracts")
