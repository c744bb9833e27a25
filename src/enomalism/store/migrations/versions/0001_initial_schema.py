"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # machines and hypervisors point at each other: SQLite takes the forward reference inline,
    # other databases get the constraint once both tables exist.
    sqlite = op.get_bind().dialect.name == "sqlite"
    host_fk = [
        sa.ForeignKeyConstraint(['machine_uuid'], ['machines.uuid'], name='fk_hypervisors_machine_uuid', ondelete='CASCADE')
    ] if sqlite else []
    op.create_table('users',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('username')
    )
    op.create_table('clusters',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('name')
    )
    op.create_table('hypervisors',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('machine_uuid', sa.String(length=36), nullable=False),
    sa.Column('virt_class', sa.String(length=16), nullable=False),
    sa.Column('virt_url', sa.String(length=1024), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('driver', sa.String(length=32), nullable=True),
    sa.Column('libvirt_version', sa.String(length=32), nullable=True),
    sa.Column('cpus', sa.Integer(), nullable=True),
    sa.Column('memory_kib', sa.Integer(), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    *host_fk,
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('virt_url')
    )
    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hypervisors_machine_uuid'), ['machine_uuid'], unique=False)

    op.create_table('machines',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('parent_uuid', sa.String(length=36), nullable=True),
    sa.Column('address', sa.String(length=255), nullable=True),
    sa.Column('is_local', sa.Boolean(), nullable=False),
    sa.Column('candidates', sa.JSON(), nullable=False),
    sa.Column('managed', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('persistent', sa.Boolean(), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=True),
    sa.Column('memory_kib', sa.Integer(), nullable=True),
    sa.Column('max_memory_kib', sa.Integer(), nullable=True),
    sa.Column('xmldesc', sa.Text(), nullable=True),
    sa.Column('xml_pending', sa.Boolean(), nullable=False),
    sa.Column('lock_txid', sa.String(length=36), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['parent_uuid'], ['hypervisors.uuid'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('uuid')
    )
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_machines_parent_uuid'), ['parent_uuid'], unique=False)
    if not sqlite:
        op.create_foreign_key(
            'fk_hypervisors_machine_uuid', 'hypervisors', 'machines', ['machine_uuid'], ['uuid'],
            ondelete='CASCADE',
        )

    op.create_table('cluster_members',
    sa.Column('cluster_uuid', sa.String(length=36), nullable=False),
    sa.Column('machine_uuid', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['cluster_uuid'], ['clusters.uuid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['machine_uuid'], ['machines.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('cluster_uuid', 'machine_uuid'),
    )
    with op.batch_alter_table('cluster_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_members_machine_uuid'), ['machine_uuid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('cluster_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_members_machine_uuid'))

    op.drop_table('cluster_members')
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint('fk_hypervisors_machine_uuid', 'hypervisors', type_='foreignkey')
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_machines_parent_uuid'))

    op.drop_table('machines')
    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hypervisors_machine_uuid'))

    op.drop_table('hypervisors')
    op.drop_table('clusters')
    op.drop_table('users')
