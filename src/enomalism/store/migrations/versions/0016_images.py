"""images: uploaded and registered disk and ISO images

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'  # this branch's head; the integrator re-chains
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('images',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('virtual_size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('hypervisor_uuid', sa.String(length=36), nullable=False),
    sa.Column('pool', sa.String(length=255), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hypervisor_uuid'], ['hypervisors.uuid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('owner_uuid', 'name')
    )
    op.create_index(op.f('ix_images_hypervisor_uuid'), 'images', ['hypervisor_uuid'])
    op.create_index(op.f('ix_images_owner_uuid'), 'images', ['owner_uuid'])


def downgrade() -> None:
    op.drop_index(op.f('ix_images_owner_uuid'), table_name='images')
    op.drop_index(op.f('ix_images_hypervisor_uuid'), table_name='images')
    op.drop_table('images')
