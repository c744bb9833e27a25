"""One storage pool of a hypervisor, as the services see it: a name, its sizes, and the disks
made in it. The libvirt pool stays inside; every call raises only `enomalism.errors`."""

from collections.abc import Callable

import libvirt

from enomalism.errors import HypervisorError
from enomalism.virt import pools, storage


class StoragePool:
    def __init__(self, pool: libvirt.virStoragePool) -> None:
        self._pool = pool

    def name(self) -> str:
        return str(self._pool.name())

    def info(self) -> tuple[int, int, int, int]:
        """(state, capacity, allocation, available), sizes in bytes."""
        try:
            state, capacity, allocation, available = self._pool.info()
        except libvirt.libvirtError as e:  # the pool went away meanwhile
            raise HypervisorError(f"reading storage pool {self.name()}: {e}") from None
        return state, capacity, allocation, available

    def volume_path(self, name: str) -> str | None:
        """The path of the pool's volume `name`; None when it has none of that name."""
        try:
            return str(self._pool.storageVolLookupByName(name).path())
        except libvirt.libvirtError:
            return None

    def volumes(self) -> list[pools.Vol]:
        return pools.volumes(self._pool)

    def check_space(self, size: int) -> None:
        pools.check_space(self._pool, size)

    def create_volume(self, name: str, size: int) -> str:
        return pools.create_volume(self._pool, name, size)

    def supports_overlay(self) -> bool:
        return storage.supports_overlay(self._pool)

    def planned_path(self, name: str) -> str:
        return storage.planned_path(self._pool, name)

    def upload(self, name: str, source: storage.Readable, *, size: int, fmt: str,
               progress: Callable[[int], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> str:
        return storage.upload(self._pool, name, source, size=size, fmt=fmt,
                              progress=progress, cancelled=cancelled)

    def overlay(self, name: str, backing_path: str, backing_format: str,
                virtual_size: int | None = None) -> str:
        return storage.overlay(self._pool, name, backing_path, backing_format, virtual_size)

    def blank(self, name: str, capacity: int) -> str:
        return storage.blank(self._pool, name, capacity)

    def clone(self, name: str, source_path: str, *, fmt: str | None = None) -> str:
        return storage.clone(self._pool, name, source_path, fmt=fmt)
