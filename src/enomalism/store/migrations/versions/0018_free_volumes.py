"""volumes: a volume may be a user's own, attached to no machine (issue 16, storage)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.alter_column('machine_uuid', existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column('owner_uuid', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_volumes_owner_uuid'), ['owner_uuid'], unique=False)
        batch_op.create_foreign_key('fk_volumes_owner_uuid_users', 'users', ['owner_uuid'],
                                    ['uuid'], ondelete='CASCADE')


def downgrade() -> None:
    op.execute("DELETE FROM volumes WHERE machine_uuid IS NULL")
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_constraint('fk_volumes_owner_uuid_users', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_volumes_owner_uuid'))
        batch_op.drop_column('owner_uuid')
        batch_op.alter_column('machine_uuid', existing_type=sa.String(length=36), nullable=False)
