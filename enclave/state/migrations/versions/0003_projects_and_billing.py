"""Projects (applications, members, requested columns and file-years, documents, changes)
and billing (fee notices, the ledger).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("applicant", sa.String(64), nullable=False),
        sa.Column("institution", sa.String(200), nullable=False),
        sa.Column("project_type", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review_started_on", sa.Date),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decision_reason", sa.Text),
        sa.Column("notice_date", sa.Date),
        sa.Column("paid_on", sa.Date),
        sa.Column("first_use_date", sa.Date),
        sa.Column("period_end", sa.Date),
        sa.Column("extension_months", sa.Integer, nullable=False, server_default="0"),
        sa.Column("approved_half_days", sa.Integer, nullable=False, server_default="0"),
        sa.Column("used_half_days", sa.Integer, nullable=False, server_default="0"),
        sa.Column("computers", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "project_documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "project_members",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("project_role", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(200), nullable=False),
        sa.Column("proof_document_id", sa.Integer, sa.ForeignKey("project_documents.id")),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        sa.Column("contract_signed_at", sa.DateTime(timezone=True)),
        sa.Column("confidentiality_signed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("project_id", "username"),
    )
    op.create_table(
        "project_columns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("file", sa.String(32), nullable=False),
        sa.Column("column", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("decision_reason", sa.Text),
        sa.Column("change_id", sa.Integer),
        sa.UniqueConstraint("project_id", "file", "column"),
    )
    op.create_table(
        "project_file_years",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("file", sa.String(32), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("decision_reason", sa.Text),
        sa.Column("change_id", sa.Integer),
        sa.UniqueConstraint("project_id", "file", "year"),
    )
    op.create_table(
        "change_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False, server_default="{}"),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_table(
        "fee_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("change_id", sa.Integer),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paid_on", sa.Date),
        sa.Column("payment_reference", sa.Text),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_projects_applicant", "projects", ["applicant"])
    op.create_index("ix_project_members_username", "project_members", ["username"])
    op.create_index("ix_change_requests_project_id", "change_requests", ["project_id"])
    op.create_index("ix_fee_notices_project_id", "fee_notices", ["project_id"])
    op.create_index("ix_ledger_entries_project_code", "ledger_entries", ["project_code"])
    op.create_index("ix_ledger_entries_occurred_on", "ledger_entries", ["occurred_on"])


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("fee_notices")
    op.drop_table("change_requests")
    op.drop_table("project_file_years")
    op.drop_table("project_columns")
    op.drop_table("project_members")
    op.drop_table("project_documents")
    op.drop_table("projects")
