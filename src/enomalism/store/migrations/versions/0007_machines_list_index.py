"""machines list index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.create_index('ix_machines_kind_name_uuid', ['kind', 'name', 'uuid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.drop_index('ix_machines_kind_name_uuid')
