"""packages.name_set, description_set: what a user set with 6.3 survives a feed refresh

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_set', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('description_set', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_column('description_set')
        batch_op.drop_column('name_set')
