"""repositories packages

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('repositories',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('password', sa.String(length=1024), nullable=True),
    sa.Column('title', sa.String(length=255), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('feed_uuid', sa.String(length=64), nullable=True),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('uuid')
    )
    op.create_table('packages',
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('repository_uuid', sa.String(length=36), nullable=True),
    sa.Column('guid', sa.String(length=1024), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('virt_class', sa.String(length=16), nullable=True),
    sa.Column('arch', sa.String(length=32), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('length', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=True),
    sa.Column('size', sa.Integer(), nullable=True),
    sa.Column('manifest', sa.JSON(), nullable=True),
    sa.Column('owner_uuid', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_uuid'], ['users.uuid'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['repository_uuid'], ['repositories.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid'),
    sa.UniqueConstraint('repository_uuid', 'guid')
    )
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_packages_repository_uuid'), ['repository_uuid'], unique=False)

    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arch', sa.String(length=32), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('hypervisors', schema=None) as batch_op:
        batch_op.drop_column('arch')

    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_packages_repository_uuid'))

    op.drop_table('packages')
    op.drop_table('repositories')
