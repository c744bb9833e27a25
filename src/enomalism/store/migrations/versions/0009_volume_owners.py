"""volumes: the storage volumes that are a machine's own; no graphics passwords in xmldesc

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Machines managed before this revision: a file or block disk that exactly one managed VM names
becomes that VM's volume (what `totaldelete` deleted before keeps being deleted); a path two
machines name belongs to neither. Stored XML loses its graphics passwords (docs/access.md).
"""

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from lxml import etree


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def upgrade() -> None:
    volumes = op.create_table('volumes',
    sa.Column('hypervisor_uuid', sa.String(length=36), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('machine_uuid', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hypervisor_uuid'], ['hypervisors.uuid'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['machine_uuid'], ['machines.uuid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hypervisor_uuid', 'path')
    )
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volumes_machine_uuid'), ['machine_uuid'],
                              unique=False)

    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT uuid, parent_uuid, managed, xmldesc FROM machines "
        "WHERE kind = 'vm' AND xmldesc IS NOT NULL")).all()
    named: dict[tuple[str, str], set[str]] = defaultdict(set)
    for uuid, parent, managed, xml in rows:
        try:
            root = etree.fromstring(str(xml).encode(), _PARSER)
        except etree.XMLSyntaxError:
            continue
        for disk in root.iterfind("devices/disk"):
            src = disk.find("source")
            path = src is not None and (src.get("file") or src.get("dev"))
            if path and parent and managed:
                named[(str(parent), path)].add(str(uuid))
        graphics = [g for g in root.iterfind("devices/graphics") if "passwd" in g.attrib]
        for g in graphics:
            del g.attrib["passwd"]
        if graphics:
            conn.execute(sa.text("UPDATE machines SET xmldesc = :x WHERE uuid = :u"),
                         {"x": etree.tostring(root, encoding="unicode"), "u": uuid})
    now = datetime.now(UTC)
    owned = [{"hypervisor_uuid": hv, "path": path, "machine_uuid": next(iter(machines)),
              "created_at": now} for (hv, path), machines in named.items() if len(machines) == 1]
    if owned:
        op.bulk_insert(volumes, owned)


def downgrade() -> None:
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volumes_machine_uuid'))
    op.drop_table('volumes')
