"""who holds a machine's serial console, shared by every node (issue 17)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_holders',
    sa.Column('machine_uuid', sa.String(length=36), nullable=False),
    sa.Column('session', sa.String(length=32), nullable=False),
    sa.Column('node_id', sa.String(length=64), nullable=False),
    sa.Column('user_uuid', sa.String(length=36), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_uuid'], ['users.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('machine_uuid')
    )


def downgrade() -> None:
    op.drop_table('console_holders')
