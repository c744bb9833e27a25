"""api_tokens: a dashboard session is marked as one, so the user's token list leaves it out
(issue 18)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_session', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    # the sessions opened before: named "session " and 12 hex digits by services/sessions.py
    op.execute("UPDATE api_tokens SET is_session = true WHERE name LIKE 'session %' "
               "AND length(name) = 20 AND expires_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('is_session')
