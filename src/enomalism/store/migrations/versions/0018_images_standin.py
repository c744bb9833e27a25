"""images: contract stand-in for branch `images` (issue 16 item 2); the integrator keeps theirs

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('images',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('virtual_size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('hypervisor_uuid', sa.String(length=36), nullable=False),
    sa.Column('pool', sa.String(length=255), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['hypervisor_uuid'], ['hypervisors.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid')
    )


def downgrade() -> None:
    op.drop_table('images')
