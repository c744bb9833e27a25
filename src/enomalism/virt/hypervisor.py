"""The hypervisor object: one open libvirt connection and every operation the project asks of
it (host, domains, storage, networks). The registry hands these out; no libvirt object leaves
`virt/`, and every method raises only `enomalism.errors` exceptions.

The methods are thin: the work is in `driver.py` (domains, networks, host) and `storage.py`
(volumes), functions over the raw connection that the tests of `virt/` call directly.
"""

import ipaddress
import socket
from collections.abc import Callable
from typing import BinaryIO

import libvirt
from lxml import etree

from enomalism.errors import EnomalismError
from enomalism.virt import (
    addresses,
    console,
    driver,
    migration,
    paused,
    pools,
    sizing,
    snapshots,
    storage,
)
from enomalism.virt.domxml import Disk, DomainXML
from enomalism.virt.errors import libvirt_errors
from enomalism.virt.pool import StoragePool

# The state a lifecycle event (event, detail) says the domain is now in, for the events an
# action may be waiting for: paused or resumed by the API, not by an I/O error, a watchdog or
# a migration.
_EVENT_STATE = {
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED): "paused",
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED): "running",
}
_GONE = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL)


# Lifecycle events of a domain stopped by a failure, not by anyone's request: QEMU went away
# without a shutdown (kill -9, OOM, a QEMU crash: libvirt says FAILED) or the guest crashed
# and on_crash destroyed it (CRASHED). A guest's shutdown, a destroy, a revert, a save or a
# migration are other details.
_FAILURES = {libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
             libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed"}


def stopped_by_failure(event: int, detail: int) -> str | None:
    """'failed' or 'crashed' when the event says the domain stopped by a failure, else None
    (runtime/restarts.py)."""
    if event != libvirt.VIR_DOMAIN_EVENT_STOPPED:
        return None
    return _FAILURES.get(detail)


def event_state(event: int, detail: int) -> str | None:
    """The state a lifecycle event leaves its domain in, where an action waits for it."""
    return _EVENT_STATE.get((event, detail))


class HypervisorConnection:
    """One libvirt connection. `virconnect` is the libvirt object itself, for `virt/` and the
    tests only (tests/virt/test_hypervisor.py holds that no other module reads it)."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.virconnect = conn

    def close(self) -> None:
        try:
            self.virconnect.close()
        except libvirt.libvirtError:
            pass  # closed already

    # -- host ----------------------------------------------------------------------------

    def uri(self) -> str:
        with libvirt_errors():
            return str(self.virconnect.getURI())

    def host_info(self) -> driver.HostInfo:
        return driver.host_info(self.virconnect)

    def capabilities(self) -> str:
        """The capabilities XML (libvirt may probe QEMU for it: the registry times it)."""
        with libvirt_errors():
            return str(self.virconnect.getCapabilities())

    def offers_kvm(self) -> bool:
        """Whether the hypervisor can run KVM guests, from its capabilities."""
        try:
            caps = etree.fromstring(self.capabilities().encode())
        except (EnomalismError, etree.XMLSyntaxError):  # an old or odd driver: plain qemu
            return False
        return bool(caps.xpath("/capabilities/guest/arch/domain[@type='kvm']"))

    def emulators(self) -> set[str]:
        return driver.emulators(self.virconnect)

    def firmware_images(self) -> set[str]:
        return driver.firmware_images(self.virconnect)

    def firmware_kinds(self, virt_type: str) -> set[str] | None:
        return driver.firmware_kinds(self.virconnect, virt_type)

    def host_usage(self) -> tuple[int, list[driver.PoolUsage]]:
        return driver.host_usage(self.virconnect)

    # -- domains -------------------------------------------------------------------------

    def snapshot(self, uuid: str, *, with_xml: bool = True) -> driver.DomainSnapshot | None:
        return driver.snapshot(self.virconnect, uuid, with_xml=with_xml)

    def all_snapshots(self) -> list[driver.DomainSnapshot]:
        return driver.all_snapshots(self.virconnect)

    def domain_stats(self) -> list[driver.DomainStats]:
        return driver.domain_stats(self.virconnect)

    def domain_xml(self, uuid: str, *, secure: bool = False) -> str:
        return driver.domain_xml(self.virconnect, uuid, secure=secure)

    def domain_xmls(self) -> list[tuple[str, str]]:
        """(name, current XML: a running domain's shows its disks' backing chains) of every
        domain; those undefined while read are left out."""
        out = []
        with libvirt_errors():
            for dom in self.virconnect.listAllDomains(0):
                try:
                    out.append((dom.name(), dom.XMLDesc(0)))
                except libvirt.libvirtError as e:
                    if e.get_error_code() not in _GONE:
                        raise
        return out

    def start(self, uuid: str) -> driver.DomainState | None:
        return driver.start(self.virconnect, uuid)

    def suspend(self, uuid: str) -> driver.DomainState | None:
        return driver.suspend(self.virconnect, uuid)

    def resume(self, uuid: str) -> driver.DomainState | None:
        return driver.resume(self.virconnect, uuid)

    def shutdown(self, uuid: str) -> driver.DomainState | None:
        return driver.shutdown(self.virconnect, uuid)

    def reboot(self, uuid: str) -> driver.DomainState | None:
        return driver.reboot(self.virconnect, uuid)

    def poweroff(self, uuid: str) -> driver.DomainState | None:
        return driver.poweroff(self.virconnect, uuid)

    def define(self, xml: str) -> driver.DomainSnapshot:
        return driver.define(self.virconnect, xml)

    def set_autostart(self, uuid: str, on: bool) -> None:
        driver.set_autostart(self.virconnect, uuid, on)

    def undefine(self, uuid: str) -> None:
        driver.undefine(self.virconnect, uuid)

    def rename(self, uuid: str, name: str) -> None:
        driver.rename(self.virconnect, uuid, name)

    def name_taken(self, name: str, *, other_than: str | None = None) -> bool:
        return driver.name_taken(self.virconnect, name, other_than=other_than)

    def uuid_taken(self, uuid: str) -> bool:
        return driver.uuid_taken(self.virconnect, uuid)

    # -- disks and storage ---------------------------------------------------------------

    def check_disks(self, uri: str, xml: DomainXML) -> None:
        driver.check_disks(self.virconnect, uri, xml)

    def hard_disks(self, xml: DomainXML) -> list[Disk]:
        return driver.hard_disks(self.virconnect, xml)

    def disks_in_use(self, *, except_uuid: str) -> set[str]:
        return driver.disks_in_use(self.virconnect, except_uuid=except_uuid)

    def machines_using(self, path: str) -> list[str]:
        return driver.machines_using(self.virconnect, path)

    def delete_volumes(self, xml: DomainXML, *, keep: set[str], only: set[str]) -> list[str]:
        return driver.delete_volumes(self.virconnect, xml, keep=keep, only=only)

    def volume_path(self, *, path: str | None = None, pool: str | None = None,
                    volume: str | None = None) -> str | None:
        return driver.volume_path(self.virconnect, path=path, pool=pool, volume=volume)

    def delete_volume(self, path: str) -> bool:
        return driver.delete_volume(self.virconnect, path)

    def delete_pool_volume(self, pool: str, name: str) -> bool:
        return driver.delete_pool_volume(self.virconnect, pool, name)

    def volume_info(self, path: str) -> storage.VolumeInfo:
        return storage.volume_info(self.virconnect, path)

    def physical_size(self, path: str) -> int:
        return storage.physical_size(self.virconnect, path)

    def download(self, path: str, sink: BinaryIO, *, progress: storage.Progress | None = None,
                 cancelled: storage.Cancelled | None = None) -> int:
        return storage.download(self.virconnect, path, sink, progress=progress,
                                cancelled=cancelled)

    def pick_pool(self, preferred: str | None = None) -> StoragePool:
        return StoragePool(storage.pick_pool(self.virconnect, preferred))

    def pool(self, name: str) -> StoragePool:
        """The pool `name` (NotFound when there is none)."""
        with storage.pool_errors(self.virconnect, f"reading storage pool {name}"):
            return StoragePool(self.virconnect.storagePoolLookupByName(name))

    def pool_volumes(self, pool: str) -> list[tuple[str, str]]:
        """(name, path) of every volume of the pool `pool`."""
        with libvirt_errors():
            p = self.virconnect.storagePoolLookupByName(pool)
            return [(v.name(), v.path()) for v in p.listAllVolumes(0)]

    def active_pool_volumes(self, *, refresh: bool = False) -> list[tuple[str, str, str, str]]:
        """(pool, name, path, volume XML) of every volume of the active pools, `refresh`ed
        first when asked; volumes deleted while read are left out."""
        out = []
        with libvirt_errors():
            for p in self.virconnect.listAllStoragePools(
                    libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                if refresh:
                    try:
                        p.refresh(0)
                    except libvirt.libvirtError:
                        pass  # a refresh under way elsewhere; its list is still libvirt's own
                for vol in p.listAllVolumes(0):
                    try:
                        out.append((p.name(), vol.name(), vol.path(), vol.XMLDesc(0)))
                    except libvirt.libvirtError as e:
                        if e.get_error_code() not in _GONE:
                            raise
        return out

    # -- networks ------------------------------------------------------------------------

    def has_network(self, name: str) -> bool:
        return driver.has_network(self.virconnect, name)

    def list_networks(self) -> list[tuple[str, bool, str | None]]:
        return driver.list_networks(self.virconnect)

    def default_network(self) -> str | None:
        return driver.default_network(self.virconnect)

    def network_subnets(self, name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return driver.network_subnets(self.virconnect, name)

    def has_interface(self, name: str) -> bool | None:
        return driver.has_interface(self.virconnect, name)

    def dhcp_leased(self, network: str) -> set[str]:
        return driver.dhcp_leased(self.virconnect, network)

    # -- sizes, disks and addresses of a machine (virt/sizing.py, pools.py, addresses.py) --

    def resize(self, uuid: str, *, vcpus: int | None, memory_kib: int | None) -> bool:
        return sizing.resize(self.virconnect, uuid, vcpus=vcpus, memory_kib=memory_kib)

    def guest_addresses(self, uuid: str) -> list[addresses.GuestAddress]:
        return addresses.guest_addresses(self.virconnect, uuid)

    def paused_reason(self, uuid: str) -> str | None:
        return paused.paused_reason(self.virconnect, uuid)

    def storage_pools(self) -> list[pools.Pool]:
        return pools.pools(self.virconnect)

    def storage_pool(self, uuid: str) -> StoragePool:
        return StoragePool(pools.pool(self.virconnect, uuid))

    def attach_disk(self, uuid: str, path: str) -> str:
        return pools.attach(self.virconnect, uuid, path)

    def disk_path(self, uuid: str, target: str) -> tuple[str, str]:
        return pools.disk_path(self.virconnect, uuid, target)

    def detach_disk(self, uuid: str, target: str) -> None:
        pools.detach(self.virconnect, uuid, target)

    def grow_disk(self, uuid: str, target: str, path: str, size: int) -> bool:
        return pools.grow(self.virconnect, uuid, target, path, size)

    # -- snapshots (virt/snapshots.py) --

    def list_snapshots(self, uuid: str) -> list[snapshots.Snapshot]:
        """The machine's snapshots as a tree read depth first."""
        return snapshots.listed(self.virconnect, uuid)

    def snapshot_names(self, uuid: str) -> list[str]:
        return snapshots.names(self.virconnect, uuid)

    def get_snapshot(self, uuid: str, name: str) -> snapshots.Snapshot:
        return snapshots.get(self.virconnect, uuid, name)

    def create_snapshot(self, uuid: str, *, name: str, description: str = "",
                        memory: bool = False) -> snapshots.Snapshot:
        return snapshots.create(self.virconnect, uuid, name=name, description=description,
                                memory=memory)

    def revert_snapshot(self, uuid: str, name: str) -> None:
        snapshots.revert(self.virconnect, uuid, name)

    def delete_snapshot(self, uuid: str, name: str) -> None:
        snapshots.delete(self.virconnect, uuid, name)

    def delete_snapshots(self, uuid: str) -> int:
        return snapshots.delete_all(self.virconnect, uuid)

    # -- consoles (virt/console.py) --

    def open_serial(self, uuid: str, *, force: bool) -> console.SerialStream:
        return console.SerialStream(self.virconnect, uuid, force=force)

    def open_graphics(self, uri: str, uuid: str) -> socket.socket:
        return console.open_graphics(self.virconnect, uri, uuid)

    def console_ended(self, uuid: str) -> str:
        return console.why_ended(self.virconnect, uuid)

    def release_dhcp_lease(self, uri: str, network: str, *, mac: str, ip: str) -> bool:
        return driver.release_dhcp_lease(self.virconnect, uri, network, mac=mac, ip=ip)

    def dhcp_host(self, network: str, *, mac: str, ip: str, name: str, command: str) -> None:
        driver.dhcp_host(self.virconnect, network, mac=mac, ip=ip, name=name, command=command)

    # -- moving to another hypervisor (virt/migration.py) ----------------------------------

    def migratable_xml(self, uuid: str) -> str:
        return migration.migratable_xml(self.virconnect, uuid)

    def migrate_live(self, dest: "HypervisorConnection", uuid: str, *, xml: str,
                     persist_xml: str, disks: list[str], bandwidth_mib: int | None = None,
                     uri: str | None = None,
                     progress: Callable[[migration.MigrationProgress], None],
                     cancelled: Callable[[], bool]) -> migration.MigrationResult:
        """Live-migrate the domain to `dest` with `disks` copied (managed migration)."""
        return migration.live(self.virconnect, dest.virconnect, uuid, xml=xml,
                              persist_xml=persist_xml, disks=disks,
                              bandwidth_mib=bandwidth_mib, uri=uri, progress=progress,
                              cancelled=cancelled)

    def copy_volume_to(self, dest: "HypervisorConnection", path: str, *, pool: str,
                       name: str, progress: storage.Progress | None = None,
                       cancelled: storage.Cancelled | None = None) -> str:
        """Copy the volume at `path` into `dest`'s pool `pool` as `name`; its new path."""
        return migration.copy_volume(self.virconnect, path,
                                     storage.pick_pool(dest.virconnect, pool), name,
                                     progress=progress, cancelled=cancelled)
