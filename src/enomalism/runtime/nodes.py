"""This server as one node of several sharing a database: its heartbeat, and which node keeps
each hypervisor's machines true (the hypervisor's owner).

Every node connects to every hypervisor it may reach, so requests and jobs on any node act
through a connection of their own node. Only the owner writes what libvirt's events and full
resyncs say, so that N nodes do not each write every event. A node claims a hypervisor when it
connects to it and holds it by renewing the claim every few seconds; a claim not renewed for
`lease` seconds (the node died, or was cut off) is taken by another connected node, which then
resyncs that hypervisor in full. Claims are compare-and-swap updates of one row, so two nodes
never both own a hypervisor for longer than it takes the old owner to see its renewal fail.
"""

import logging
import os
import socket
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from enomalism.store.db import Database, changed
from enomalism.store.models import Hypervisor, Node, utcnow
from enomalism.virt import uri as uris

log = logging.getLogger(__name__)

LEASE = 20.0  # seconds a claim holds without renewal
RENEW = 5.0  # seconds between renewals (and between looks for orphaned hypervisors)
FORGET = timedelta(days=7)  # a node stopped or silent this long leaves /rest/nodes/

_machine = socket.gethostname()


def this_machine() -> str:
    """The name of the machine this server runs on; nodes on one machine share its local
    hypervisors (qemu:///system), nodes on others cannot reach them."""
    return _machine


def set_this_machine(name: str) -> None:
    global _machine
    _machine = name


def local_to(url: str) -> str | None:
    """The machine a hypervisor URI is tied to: this one for a URI with no host part."""
    return this_machine() if uris.is_local(url) else None


def reachable_here(hv_local_to: str | None) -> bool:
    return hv_local_to is None or hv_local_to == this_machine()


class Ownership:
    """This node's row in `nodes` and its claims on hypervisors."""

    def __init__(self, db: Database, node_id: str, lease: float = LEASE) -> None:
        self.db, self.node_id, self.lease = db, node_id, lease
        self.owned: set[str] = set()
        self._started = False  # has this process beaten yet

    def mine_or_free(self, now):  # noqa: ANN001, ANN202
        """SQL: the hypervisor is this node's, or no live claim holds it."""
        return or_(Hypervisor.owner_node == self.node_id, Hypervisor.owner_node.is_(None),
                   Hypervisor.owner_until.is_(None), Hypervisor.owner_until < now)

    def beat(self) -> None:
        """Say this node is alive (creates its row at the first beat)."""
        now = utcnow()
        with self.db.session() as s:
            node = s.get(Node, self.node_id)
            if node is None:
                s.add(Node(id=self.node_id, hostname=this_machine(), pid=os.getpid(),
                           started_at=now, seen_at=now))
            else:
                if not self._started or node.stopped_at is not None:  # started again
                    node.started_at, node.stopped_at, node.pid = now, None, os.getpid()
                node.hostname, node.seen_at = this_machine(), now
        self._started = True

    def claim(self, hv_uuid: str) -> bool:
        """Take or keep the hypervisor if no other node holds a live claim on it."""
        now = utcnow()
        with self.db.session() as s:
            took = changed(s, update(Hypervisor).where(
                Hypervisor.uuid == hv_uuid, self.mine_or_free(now)).values(
                owner_node=self.node_id, owner_until=now + timedelta(seconds=self.lease)))
        mine = took == 1
        (self.owned.add if mine else self.owned.discard)(hv_uuid)
        return mine

    def owns(self, hv_uuid: str) -> bool:
        return hv_uuid in self.owned

    def renew(self, connected: list[str], lost: Sequence[str] = ()) -> tuple[set[str], set[str]]:
        """Renew the claims on the hypervisors this node is connected to and take those whose
        owner went silent; let go of those in `lost` (disconnected, or no longer supervised).
        A hypervisor in neither (connecting) keeps its claim until it lapses. Returns
        (gained, lost)."""
        now = utcnow()
        until = now + timedelta(seconds=self.lease)
        with self.db.session() as s:
            if connected:
                s.execute(update(Hypervisor).where(
                    Hypervisor.uuid.in_(connected), self.mine_or_free(now)).values(
                    owner_node=self.node_id, owner_until=until))
            if lost:
                s.execute(update(Hypervisor).where(
                    Hypervisor.owner_node == self.node_id, Hypervisor.uuid.in_(lost)).values(
                    owner_node=None, owner_until=None))
            now_owned = set(s.scalars(select(Hypervisor.uuid).where(
                Hypervisor.owner_node == self.node_id)))
        gained, dropped = now_owned - self.owned, self.owned - now_owned
        self.owned = now_owned
        return gained, dropped

    def release(self, hv_uuid: str) -> None:
        self.owned.discard(hv_uuid)
        with self.db.session() as s:
            s.execute(update(Hypervisor).where(
                Hypervisor.uuid == hv_uuid, Hypervisor.owner_node == self.node_id).values(
                owner_node=None, owner_until=None))

    def forget_old(self, after: timedelta = FORGET) -> int:
        """Remove the rows of nodes gone for longer than `after` (stopped, or silent) that own
        nothing: each deployment or crash with a fresh node id would otherwise stay listed."""
        cutoff = utcnow() - after
        held = select(Hypervisor.owner_node).where(Hypervisor.owner_node.is_not(None))
        with self.db.session() as s:
            return changed(s, delete(Node).where(
                Node.id != self.node_id, Node.seen_at < cutoff, Node.id.not_in(held)))

    def stop(self) -> None:
        """Let every claim go at once (another node takes over without waiting for the lease)
        and record the stop."""
        self.owned.clear()
        with self.db.session() as s:
            s.execute(update(Hypervisor).where(Hypervisor.owner_node == self.node_id).values(
                owner_node=None, owner_until=None))
            s.execute(update(Node).where(Node.id == self.node_id).values(stopped_at=utcnow()))

