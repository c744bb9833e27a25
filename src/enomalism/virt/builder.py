"""Domain XML for a machine created from parameters (`PUT /rest/machines/` without `xmldesc`).

The project writes every element itself from checked values; nothing the caller sends is
pasted in as XML. What it builds is still put through the domain-XML policy (virt/policy.py)
before libvirt sees it. The shape follows what virt-install writes for a modern Linux guest:
q35 with ACPI, virtio disks and interfaces, CD-ROMs on SATA, a virtio RNG, a serial console on
a pty and VNC on a unix socket only: no network address at all, so the display is reached only
through the project's console WebSocket (docs/consoles.md; libvirt hands QEMU's socket over
locally, an SSH transport reaches the socket on a remote host).

The cloud-init seed is a CD-ROM on a virtio-scsi controller of its own, not on SATA: the kernel
that reads it is the installed cloud image's, and cloud kernels are built for virtio (Debian's
cloud kernel has virtio-scsi and the SCSI CD-ROM driver but no AHCI, so it would never see a
SATA seed on q35). An installer ISO stays on SATA, which every firmware and installer reads.
"""

from dataclasses import dataclass, field

from lxml import etree

CPU_MODES = ("host-passthrough", "host-model", "maximum")


@dataclass(frozen=True)
class Disk:
    path: str
    target: str  # vda, sda, ...
    format: str = "qcow2"  # the driver type: qcow2 or raw
    device: str = "disk"  # disk or cdrom
    seed: bool = False  # the cloud-init seed: a CD-ROM on virtio-scsi

    @property
    def bus(self) -> str:
        if self.seed:
            return "scsi"
        return "sata" if self.device == "cdrom" else "virtio"


@dataclass(frozen=True)
class Nic:
    source: str  # a libvirt network's name, or a bridge
    mac: str
    libvirt_network: bool = True


@dataclass(frozen=True)
class Spec:
    name: str
    uuid: str
    domain_type: str  # kvm, qemu (TCG) or test
    vcpus: int
    memory_mib: int
    firmware: str = "bios"  # bios or uefi
    cpu_mode: str | None = None  # one of CPU_MODES; None: the hypervisor's default model
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str
         ) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _os(spec: Spec) -> etree._Element:
    os_el = etree.Element("os")
    if spec.firmware == "uefi":
        os_el.set("firmware", "efi")  # libvirt picks the loader and makes the NVRAM
    machine = {} if spec.domain_type == "test" else {"machine": "q35"}
    _sub(os_el, "type", "hvm", arch="x86_64", **machine)
    _sub(os_el, "boot", dev="hd")
    if any(d.device == "cdrom" for d in spec.disks):
        _sub(os_el, "boot", dev="cdrom")  # an installer boots while the disk is blank
    return os_el


def _cpu(spec: Spec) -> etree._Element | None:
    if not spec.cpu_mode:
        return None
    cpu = etree.Element("cpu", mode=spec.cpu_mode)
    if spec.cpu_mode == "host-passthrough":
        cpu.set("check", "none")
    return cpu


def _disk(d: Disk, controller: int | None = None) -> etree._Element:
    el = etree.Element("disk", type="file", device=d.device)
    _sub(el, "driver", name="qemu", type=d.format)
    _sub(el, "source", file=d.path)
    _sub(el, "target", dev=d.target, bus=d.bus)
    if d.device == "cdrom":
        _sub(el, "readonly")
    if controller is not None:  # the first unit of the SCSI controller made for it
        _sub(el, "address", type="drive", controller=str(controller), bus="0", target="0",
             unit="0")
    return el


def _seed_controller(devices: etree._Element) -> int:
    """Add a virtio-scsi controller for the seed, on a SCSI index no controller has (another
    model there, lsilogic say, may have no driver in a cloud kernel); returns its index."""
    taken = {int(c.get("index", "0")) for c in devices.iterfind("controller[@type='scsi']")}
    index = next(i for i in range(len(taken) + 1) if i not in taken)
    devices.append(etree.Element("controller", type="scsi", index=str(index),
                                 model="virtio-scsi"))
    return index


def _interface(n: Nic) -> etree._Element:
    el = etree.Element("interface", type="network" if n.libvirt_network else "bridge")
    _sub(el, "mac", address=n.mac)
    _sub(el, "source", **{"network" if n.libvirt_network else "bridge": n.source})
    _sub(el, "model", type="virtio")
    return el


def _consoles(devices: etree._Element) -> None:
    """A serial port on a pty, and the console on it (`virsh console`)."""
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")


def _graphics() -> etree._Element:
    """VNC on a unix socket libvirt names (no TCP port, no listen address)."""
    el = etree.Element("graphics", type="vnc")
    _sub(el, "listen", type="socket")
    return el


def _devices(spec: Spec) -> etree._Element:
    devices = etree.Element("devices")
    for d in spec.disks:
        devices.append(_disk(d, _seed_controller(devices) if d.seed else None))
    for n in spec.nics:
        devices.append(_interface(n))
    _consoles(devices)
    devices.append(_graphics())
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    return devices


def domain(spec: Spec) -> etree._Element:
    """The <domain> element for `spec`."""
    root = etree.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus), placement="static")
    root.append(_os(spec))
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if (cpu := _cpu(spec)) is not None:
        root.append(cpu)
    _sub(root, "clock", offset="utc")
    root.append(_devices(spec))
    return root


def to_xml(spec: Spec) -> str:
    return etree.tostring(domain(spec), encoding="unicode")


def add_seed(root: etree._Element, path: str) -> str:
    """Attach the cloud-init seed at `path` to a domain (a package's XML) as a read-only CD-ROM
    on a virtio-scsi controller of its own, on the first free sdX target; returns the target."""
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    taken = {t.get("dev") for t in root.iterfind("devices/disk/target")}
    target = next(f"sd{c}" for c in "abcdefghijklmnopqrstuvwxyz" if f"sd{c}" not in taken)
    devices.append(_disk(Disk(path, target, "raw", "cdrom", seed=True),
                         _seed_controller(devices)))
    return target
