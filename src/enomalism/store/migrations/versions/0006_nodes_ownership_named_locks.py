"""nodes, hypervisor ownership, named locks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('named_locks',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('holder', sa.String(length=36), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('named_locks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_named_locks_holder'), ['holder'], unique=False)

    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('local_to', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('owner_node', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('owner_until', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('local_to', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.drop_column('local_to')

    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.drop_column('owner_until')
        batch_op.drop_column('owner_node')
        batch_op.drop_column('local_to')

    with op.batch_alter_table('named_locks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_named_locks_holder'))

    op.drop_table('named_locks')
    op.drop_table('nodes')
