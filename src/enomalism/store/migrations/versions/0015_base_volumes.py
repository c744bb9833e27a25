"""base_volumes: the base volumes provisioning uploaded, this installation's to remove

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('base_volumes',
    sa.Column('hypervisor_uuid', sa.String(length=36), nullable=False),
    sa.Column('pool', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('package_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hypervisor_uuid'], ['hypervisors.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hypervisor_uuid', 'pool', 'name')
    )


def downgrade() -> None:
    op.drop_table('base_volumes')
