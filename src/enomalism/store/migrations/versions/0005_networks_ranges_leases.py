"""networks ranges leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('networks',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('bridge', sa.String(length=255), nullable=False),
    sa.Column('cluster_uuid', sa.String(length=36), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.Integer(), nullable=False),
    sa.Column('gateway', sa.String(length=64), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cluster_uuid'], ['clusters.uuid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_networks_bridge'), ['bridge'], unique=False)
        batch_op.create_index(batch_op.f('ix_networks_cluster_uuid'), ['cluster_uuid'], unique=False)

    op.create_table('ip_ranges',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('network_uuid', sa.String(length=36), nullable=False),
    sa.Column('start_ip', sa.String(length=64), nullable=False),
    sa.Column('end_ip', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['network_uuid'], ['networks.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid')
    )
    with op.batch_alter_table('ip_ranges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ip_ranges_network_uuid'), ['network_uuid'], unique=False)

    op.create_table('leases',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('network_uuid', sa.String(length=36), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('machine_uuid', sa.String(length=36), nullable=True),
    sa.Column('mac', sa.String(length=17), nullable=True),
    sa.Column('note', sa.String(length=255), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['machine_uuid'], ['machines.uuid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['network_uuid'], ['networks.uuid'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('network_uuid', 'address')
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leases_machine_uuid'), ['machine_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_network_uuid'), ['network_uuid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leases_network_uuid'))
        batch_op.drop_index(batch_op.f('ix_leases_machine_uuid'))

    op.drop_table('leases')
    with op.batch_alter_table('ip_ranges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ip_ranges_network_uuid'))

    op.drop_table('ip_ranges')
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_networks_cluster_uuid'))
        batch_op.drop_index(batch_op.f('ix_networks_bridge'))

    op.drop_table('networks')
