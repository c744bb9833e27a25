"""machines: restart_policy, autostart and the recent automatic restarts (issue 19)

Revision ID: r5snap
Revises: 0018
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = 'r5snap'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('restart_policy', sa.String(length=16), nullable=False,
                                      server_default='never'))
        batch_op.add_column(sa.Column('autostart', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('restarts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('machines', schema=None) as batch_op:
        batch_op.drop_column('restarts')
        batch_op.drop_column('autostart')
        batch_op.drop_column('restart_policy')
