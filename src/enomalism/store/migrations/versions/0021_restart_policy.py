"""machines: restart_policy, autostart and the recent automatic restarts (issue 19)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: a batch would copy the table on SQLite, and dropping the old one
    # fails while hypervisors refer to it.
    op.add_column('machines', sa.Column('restart_policy', sa.String(length=16), nullable=False,
                                        server_default='never'))
    op.add_column('machines', sa.Column('autostart', sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column('machines', sa.Column('restarts', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('machines', 'restarts')
    op.drop_column('machines', 'autostart')
    op.drop_column('machines', 'restart_policy')
