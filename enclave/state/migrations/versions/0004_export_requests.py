"""Export requests, their files and review decisions, and user notifications (issue 6).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("project_code", sa.String(32), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check_verdict", sa.String(16)),
        sa.Column("check_report", sa.Text, nullable=False, server_default="{}"),
        sa.Column("policy_label", sa.Text),
        sa.Column("two_reviewers", sa.Integer, nullable=False, server_default="0"),
        sa.Column("outbox", sa.Text),
        sa.Column("manifest_sha256", sa.String(64)),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.Column("recalled_at", sa.DateTime(timezone=True)),
        sa.Column("recall_reason", sa.Text),
    )
    op.create_index("ix_export_requests_project_code", "export_requests", ["project_code"])
    op.create_index("ix_export_requests_author", "export_requests", ["author"])
    op.create_index("ix_export_requests_status", "export_requests", ["status"])
    op.create_table(
        "export_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("export_requests.id"),
                  nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("cells_name", sa.Text),
        sa.Column("cells_sha256", sa.String(64)),
        sa.UniqueConstraint("request_id", "name"),
    )
    op.create_table(
        "export_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("export_requests.id"),
                  nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("project_code", sa.String(32)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("object", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_notifications_username", "notifications", ["username"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("export_decisions")
    op.drop_table("export_files")
    op.drop_table("export_requests")
