"""audit_log: object type and name, the outcome (errno, message)

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('object_type', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('object_name', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('errno', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('message')
        batch_op.drop_column('errno')
        batch_op.drop_column('object_name')
        batch_op.drop_column('object_type')
