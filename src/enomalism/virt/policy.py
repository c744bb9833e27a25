"""The domain-XML policy: what XML from someone other than an administrator may ask of libvirt.

An allow-list of what a normal VM needs (what virt-manager's new-VM wizard or Incus writes):
memory, vCPUs, CPU mode, OS/boot/firmware, features, clock, disks and CD-ROMs on volumes the
caller may use, interfaces on networks the caller may use, VNC/SPICE graphics on the host's
configured address (or loopback) with a port libvirt picks and no password, serial/console on
a pty, video, input, sound, RNG, the guest agent channel, watchdog, memballoon. Everything else
is refused with the element named: host devices and files (<hostdev>, <filesystem>,
file/socket/device character devices, kernel/initrd/loader paths, interface scripts), QEMU's
own namespace and every other foreign one (outside <metadata>), security labels, host CPU
pinning.

What a caller may *name* (volumes, networks, firmware, emulators) is decided by the caller of
`check` (`Rights`): this module knows the XML, not the users. docs/access.md has the table.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from enomalism.errors import ElementNotAllowed, VolumeNotAllowed
from enomalism.virt.domxml import LOOPBACK_LISTEN, DomainXML

ANY = None  # an attribute with any value


@dataclass(frozen=True)
class DiskSource:
    """What a disk names: a path (file, block device) or a pool's volume."""
    target: str | None
    path: str | None = None
    pool: str | None = None
    volume: str | None = None
    format: str = "raw"  # as the domain reads it (<driver type>; libvirt's default is raw)

    def __str__(self) -> str:
        return f"'{self.path}'" if self.path else f"volume '{self.volume}' of pool '{self.pool}'"


def _nothing(_value: object) -> bool:
    return False


@dataclass(frozen=True)
class Rights:
    """What the XML's sender may name on the hypervisor it is for."""
    disk: Callable[[DiskSource], bool] = _nothing
    network: Callable[[str], bool] = _nothing  # a libvirt network's name
    bridge: Callable[[str], bool] = _nothing  # a host bridge's name
    emulator: Callable[[str], bool] = _nothing  # an emulator binary of the hypervisor's
    loader: Callable[[str], bool] = _nothing  # a firmware image the hypervisor offers
    who: str = "for non-administrators"  # for the messages: "... is not allowed <who>"


@dataclass(frozen=True)
class _E:
    """An allowed element: its attributes (name -> allowed values, ANY: any value), its
    allowed children, or `free`: any attributes and children (no foreign namespaces)."""
    attrs: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    children: dict[str, "_E"] = field(default_factory=dict)
    free: bool = False


FREE = _E(free=True)
LEAF = _E()
_METADATA = _E(free=True)  # not walked at all (see _walk)


def _e(*names: str, children: dict[str, _E] | None = None, **values: tuple[str, ...]) -> _E:
    """An element with attributes `names` (any value) and `values` (one of these)."""
    return _E({**dict.fromkeys(names, ANY), **values}, children or {})


_ALIAS = _e("name")
_COMMON = {"address": FREE, "alias": _ALIAS}  # where a device sits on its bus, its name

_DISK = _e("type", "device", "snapshot", "model", children={
    "driver": FREE, "source": _e("file", "dev", "pool", "volume", "mode", "startupPolicy",
                                 "index"),
    "target": _e("dev", "bus", "tray", "removable", "rotation_rate"), "readonly": LEAF,
    "shareable": LEAF, "transient": _e("shareBacking"), "boot": _e("order", "loadparm"),
    "serial": LEAF, "wwn": LEAF, "vendor": LEAF, "product": LEAF, "blockio": FREE,
    "iotune": FREE, "geometry": FREE, "backingStore": LEAF, **_COMMON},
    type=("file", "block", "volume"), device=("disk", "cdrom", "floppy"))

_INTERFACE = _e("trustGuestRxFilters", children={
    "mac": _e("address"), "source": _e("network", "bridge", "portgroup"), "model": _e("type"),
    "boot": _e("order", "loadparm"), "link": _e("state"), "mtu": _e("size"), "driver": FREE,
    "filterref": FREE, "bandwidth": FREE, "coalesce": FREE, "tune": FREE,
    "rom": _e("enabled", "bar"), "port": _e("isolated"), "acpi": _e("index"), **_COMMON},
    type=("network", "bridge"))

_GRAPHICS = _e("keymap", "sharePolicy", "connected", "defaultMode", "passwdValidTo", children={
    "listen": _e(type=("address", "none", "socket"), address=LOOPBACK_LISTEN), "image": FREE,
    "jpeg": FREE, "zlib": FREE, "playback": FREE, "streaming": FREE, "mouse": FREE,
    "clipboard": FREE, "filetransfer": FREE, "channel": _e("name", "mode"), "gl": _e("enable"),
    "audio": _e("id")},
    type=("vnc", "spice"), autoport=("yes",), port=("-1",), tlsPort=("-1",), websocket=("-1",),
    listen=LOOPBACK_LISTEN)

_PTY = _e(type=("pty",), children={"target": _e("type", "port", children={"model": _e("name")}),
                                   **_COMMON})

DOMAIN = _e("type", "id", children={
    "name": LEAF, "uuid": LEAF, "title": LEAF, "description": LEAF, "genid": LEAF,
    "metadata": _METADATA,
    "memory": _e("unit", "dumpCore"), "currentMemory": _e("unit"), "maxMemory": _e("unit", "slots"),
    "vcpu": _e("current", placement=("static",)), "vcpus": FREE, "iothreads": LEAF,
    "cpu": _e("match", "check", "migratable", children={
        "model": FREE, "vendor": LEAF, "topology": FREE, "feature": FREE, "cache": FREE,
        "maxphysaddr": FREE}, mode=("custom", "host-model", "host-passthrough", "maximum")),
    "os": _e(firmware=("efi", "bios"), children={
        "type": _e("arch", "machine"), "boot": _e("dev"), "bootmenu": _e("enable", "timeout"),
        "smbios": _e(mode=("sysinfo", "emulate")), "bios": _e("useserial", "rebootTimeout"),
        "loader": _e("readonly", "type", "secure", "stateless", "format"),
        "nvram": _e("format"), "firmware": FREE}),
    "features": FREE, "clock": FREE, "pm": FREE,
    "on_poweroff": LEAF, "on_reboot": LEAF, "on_crash": LEAF, "on_lockfailure": LEAF,
    "sysinfo": _E({"type": ("smbios",)}, {
        t: FREE for t in ("bios", "system", "baseBoard", "chassis", "processor", "memory",
                          "oemStrings")}),
    "devices": _E({}, {
        "emulator": LEAF, "disk": _DISK, "controller": FREE, "interface": _INTERFACE,
        "graphics": _GRAPHICS, "serial": _PTY, "console": _PTY,
        "channel": _e(type=("unix", "spicevmc"), children={
            "source": _e(mode=("bind",)), "target": _e("name", "state", type=("virtio",)),
            **_COMMON}),
        "video": _E({}, {"model": _e("type", "vram", "ram", "vgamem", "vram64", "heads",
                                     "primary", "blob", children={
                                         "acceleration": _e("accel3d", "accel2d")}),
                         "driver": _e("vgaconf", name=("qemu",)), **_COMMON}),
        "sound": FREE, "audio": _e("id", type=("none", "spice")),
        "input": _e("bus", "model", type=("mouse", "tablet", "keyboard"),
                    children={"driver": FREE, **_COMMON}),
        "rng": _e(model=("virtio", "virtio-transitional", "virtio-non-transitional"), children={
            "rate": FREE, "driver": FREE, "backend": _e(model=("random", "builtin")),
            **_COMMON}),
        "tpm": _e(model=("tpm-tis", "tpm-crb", "tpm-spapr"), children={
            "backend": _e("version", "persistent_state", type=("emulator",)), **_COMMON}),
        # not action='dump': memory dumps on the host's disk
        "watchdog": _e("model", children=_COMMON, action=(
            "reset", "shutdown", "poweroff", "pause", "none", "inject-nmi")),
        "memballoon": FREE, "panic": FREE,
        "redirdev": _e(bus=("usb",), type=("spicevmc",), children={
            "boot": _e("order"), **_COMMON}),
    }),
})

_RNG_DEVICES = ("", "/dev/urandom", "/dev/random")


def _name(el: etree._Element) -> str:
    q = etree.QName(el)
    if q.namespace is None:
        return q.localname
    return f"{el.prefix}:{q.localname}" if el.prefix else f"{{{q.namespace}}}{q.localname}"


def _refuse(what: str, rights: Rights) -> ElementNotAllowed:
    return ElementNotAllowed(f"{what} is not allowed {rights.who}")


def _walk(el: etree._Element, rule: _E, rights: Rights) -> None:
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions: libvirt ignores them
        if etree.QName(child).namespace is not None:
            raise _refuse(f"element <{_name(child)}> (a foreign namespace)", rights)
        if rule.free:
            _walk(child, FREE, rights)
            continue
        sub = rule.children.get(child.tag)
        if sub is None:
            raise _refuse(f"element <{child.tag}>", rights)
        if sub is _METADATA:
            continue  # libvirt keeps it and acts on none of it: any namespace, any content
        _attributes(child, sub, rights)
        _walk(child, sub, rights)


def _attributes(el: etree._Element, rule: _E, rights: Rights) -> None:
    if rule.free:
        return
    for attr, value in el.attrib.items():
        if etree.QName(attr).namespace is not None:
            continue  # namespaced attributes: libvirt reads none of them
        if attr not in rule.attrs:
            raise _refuse(f"attribute {attr} of <{el.tag}>", rights)
        allowed = rule.attrs[attr]
        if allowed is not ANY and value not in allowed:
            raise _refuse(f"<{el.tag} {attr}='{value}'>", rights)


def check(xml: DomainXML, rights: Rights) -> None:
    """Refuse (ElementNotAllowed, VolumeNotAllowed) anything outside the policy, naming it."""
    root = xml.root
    _attributes(root, DOMAIN, rights)
    _walk(root, DOMAIN, rights)
    _check_values(root, rights)
    for source in disk_sources(xml):
        if not rights.disk(source):
            raise VolumeNotAllowed(
                f"disk {source.target or '(no target)'}: {source} as {source.format} is not a "
                "volume you may attach (only volumes of machines you may modify, on the same "
                "hypervisor, read in the format their machine reads them)")


def _check_values(root: etree._Element, rights: Rights) -> None:
    """What the allow-list's shape cannot say: paths, names and sources the caller gives."""
    _check_host_paths(root, rights)
    _check_interfaces(root, rights)
    _check_devices(root, rights)


def _check_host_paths(root: etree._Element, rights: Rights) -> None:
    """Files of the host the XML would have QEMU run, load or write."""
    for el in root.iterfind("devices/emulator"):
        if not rights.emulator((el.text or "").strip()):
            raise _refuse(f"<emulator>{(el.text or '').strip()}</emulator> (not one of the "
                          "hypervisor's emulators)", rights)
    for el in root.iterfind("os/loader"):
        path = (el.text or "").strip()
        if path and not rights.loader(path):
            raise _refuse(f"<loader>{path}</loader> (not a firmware the hypervisor offers; "
                          "use <os firmware='efi'>)", rights)
    for el in root.iterfind("on_crash"):  # as <watchdog action='dump'>: memory on the host's disk
        if (el.text or "").strip().startswith("coredump"):
            raise _refuse(f"<on_crash>{el.text.strip()}</on_crash> (a guest memory dump on the "
                          "host's disk)", rights)
    for el in root.iterfind("os/nvram"):
        if (el.text or "").strip():
            raise _refuse("a path in <nvram> (libvirt makes the VARS file itself)", rights)


def _check_interfaces(root: etree._Element, rights: Rights) -> None:
    """Every interface on one network or bridge the caller may use."""
    for el in root.iterfind("devices/interface"):
        kind = el.get("type")
        sources = el.findall("source")
        names = [src.get(kind) for src in sources] if kind in ("network", "bridge") else []
        if len(names) != 1 or not names[0]:
            raise ElementNotAllowed(f"<interface type='{kind}'> needs one <source {kind}='...'/>"
                                    ": a network you may use")
        usable = rights.network(names[0]) if kind == "network" else rights.bridge(names[0])
        if not usable:
            raise ElementNotAllowed(f"interface on {kind} '{names[0]}': not a network you may "
                                    "use")


def _check_devices(root: etree._Element, rights: Rights) -> None:
    """Channels and random sources that would reach into the host."""
    for el in root.iterfind("devices/channel"):
        target = el.find("target")
        if el.get("type") == "unix" and (target is None or
                                         target.get("name") != "org.qemu.guest_agent.0"):
            raise _refuse("a unix <channel> other than the guest agent's "
                          "(org.qemu.guest_agent.0)", rights)
    for backend in root.iterfind("devices/rng/backend"):
        if backend.get("model") == "random" and (backend.text or "").strip() not in _RNG_DEVICES:
            raise _refuse(f"rng backend {(backend.text or '').strip()} (use /dev/urandom)",
                          rights)


def disk_sources(xml: DomainXML) -> list[DiskSource]:
    """What each disk with a source names."""
    out = []
    for d in xml.root.iterfind("devices/disk"):
        target = d.find("target")
        dev = target.get("dev") if target is not None else None
        kind = d.get("type", "file")
        drv = d.find("driver")
        fmt = (drv.get("type") if drv is not None else None) or "raw"
        for src in d.iterfind("source"):  # libvirt reads the first; each must pass
            if kind == "volume":
                if src.get("pool") or src.get("volume"):
                    out.append(DiskSource(dev, pool=src.get("pool"), volume=src.get("volume"),
                                          format=fmt))
            elif path := src.get("dev" if kind == "block" else "file"):
                out.append(DiskSource(dev, path=path, format=fmt))
    return out
