"""Domain XML read and patched as a tree (lxml), never as strings.

The parser refuses DTDs, entities and network access, so XML from clients is safe to read.
"""

import secrets
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from enomalism.errors import InvalidInput, InvalidXML

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, dtd_validation=False, load_dtd=False,
    remove_blank_text=False, huge_tree=False,
)


@dataclass(frozen=True)
class Disk:
    path: str
    device: str  # disk, cdrom, floppy, lun
    target: str | None
    readonly: bool
    shareable: bool


@dataclass(frozen=True)
class VolumeDisk:
    """A `<disk type='volume'>`: a storage volume named by its pool and its name."""
    pool: str
    volume: str
    device: str
    target: str | None
    readonly: bool
    shareable: bool


@dataclass(frozen=True)
class Interface:
    type: str  # network, bridge, direct, user, ...
    source: str | None  # the network's name, the bridge, the host device; None for user
    mac: str | None
    model: str | None


@dataclass(frozen=True)
class StaticNic:
    """An interface joined to a static network with a leased address."""

    network: str  # the enomalism network's UUID
    source: str  # the bridge, or the libvirt network's name
    libvirt_network: bool  # True: <interface type='network'>, else type='bridge'
    mac: str
    address: str
    prefix: int
    gateway: str | None


METADATA_NS = "https://enomalism.org/ns/domain/1"
SEED_NS = "https://enomalism.org/ns/cloud-init/1"  # libvirt keeps one element per namespace
MAC_PREFIX = "52:54:00"  # QEMU's range: locally administered (bit 0x02 of 0x52), unicast


def without_passwords(text: str | None) -> str | None:
    """The XML as readers get it: no graphics password (libvirt's own, read without the
    secure flag, has none; XML given through `xmldesc` may)."""
    if not text or "passwd" not in text:
        return text
    try:
        xml = DomainXML(text)
    except InvalidXML:
        return None  # not XML we could have stored; nothing of it is shown
    xml.drop_passwords()
    return xml.to_string()


def new_mac(taken: Iterable[str] = ()) -> str:
    """A random MAC address 52:54:00:xx:xx:xx, none of `taken`."""
    avoid = {m.lower() for m in taken}
    while True:
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))
        if mac not in avoid:
            return mac


_SOURCE_ATTRS = ("network", "bridge", "dev", "path", "address")
_DISK_FORMATS = ("raw", "qcow2")
UNSOURCED_TYPES = ("network", "bridge", "direct")  # what export leaves for the target to fill


def _has_source(iface: etree._Element) -> bool:
    src = iface.find("source")
    return src is not None and any(src.get(a) for a in _SOURCE_ATTRS)
LOOPBACK_LISTEN = ("127.0.0.1", "::1", "localhost")


# libvirt's memory units (formatdomain: "Memory Allocation"): powers of 1000 and of 1024.
_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6,
          "m": 2**20, "mib": 2**20, "gb": 10**9, "g": 2**30, "gib": 2**30, "tb": 10**12,
          "t": 2**40, "tib": 2**40, "pb": 10**15, "p": 2**50, "pib": 2**50, "eb": 10**18,
          "e": 2**60, "eib": 2**60}


def _kib(text: str | None, unit: str | None) -> int | None:
    """A libvirt memory value in KiB (rounded up), or None when it cannot be read."""
    factor = _UNITS.get((unit or "KiB").strip().lower())
    if factor is None or not text or not text.strip().isdigit():
        return None
    return -(-int(text.strip()) * factor // 1024)


class DomainXML:
    """A parsed `<domain>` definition."""

    def __init__(self, text: str) -> None:
        if not text or not text.strip():
            raise InvalidXML("xmldesc is empty")
        try:
            root = etree.fromstring(text.encode(), _PARSER)
        except etree.XMLSyntaxError as e:
            raise InvalidXML(f"xmldesc is not well-formed XML: {e}") from None
        if root.getroottree().docinfo.doctype:
            raise InvalidXML("xmldesc must not carry a DOCTYPE")
        if root.tag != "domain":
            raise InvalidXML(f"xmldesc must have a <domain> root element, not <{root.tag}>")
        self.root = root

    def _text(self, path: str) -> str | None:
        el = self.root.find(path)
        return el.text.strip() if el is not None and el.text and el.text.strip() else None

    @property
    def name(self) -> str | None:
        return self._text("name")

    @name.setter
    def name(self, value: str) -> None:
        self._set("name", value)

    @property
    def uuid(self) -> str | None:
        return self._text("uuid")

    @uuid.setter
    def uuid(self, value: str) -> None:
        self._set("uuid", value)

    @property
    def domain_type(self) -> str | None:
        return self.root.get("type")

    @property
    def memory_kib(self) -> int | None:
        """The memory the domain starts with (`<currentMemory>`, else `<memory>`), in KiB;
        None when the definition gives none that can be read."""
        for tag in ("currentMemory", "memory"):
            el = self.root.find(tag)
            if el is not None and (kib := _kib(el.text, el.get("unit"))) is not None:
                return kib
        return None

    @property
    def vcpus(self) -> int | None:
        """The vCPUs the domain starts with (`<vcpu current>`, else `<vcpu>`)."""
        el = self.root.find("vcpu")
        if el is None:
            return None
        for text in (el.get("current"), el.text):
            if text and text.strip().isdigit():
                return int(text.strip())
        return None

    def _set(self, tag: str, value: str) -> None:
        el = self.root.find(tag)
        if el is None:
            el = etree.SubElement(self.root, tag)
        el.text = value

    def disks(self) -> list[Disk]:
        """File and block disks with a source; network disks are not ours to manage."""
        out = []
        for d in self.root.iterfind("devices/disk"):
            src = d.find("source")
            if src is None:
                continue
            path = src.get("file") or src.get("dev")
            if not path:
                continue
            target = d.find("target")
            out.append(Disk(
                path=path,
                device=d.get("device", "disk"),
                target=target.get("dev") if target is not None else None,
                readonly=d.find("readonly") is not None,
                shareable=d.find("shareable") is not None,
            ))
        return out

    def volume_disks(self) -> list[VolumeDisk]:
        """Disks given as a pool's volume (`<source pool='P' volume='V'/>`), not by path."""
        out = []
        for d in self.root.iterfind("devices/disk[@type='volume']"):
            src, target = d.find("source"), d.find("target")
            if src is None or not src.get("pool") or not src.get("volume"):
                continue
            out.append(VolumeDisk(
                pool=src.get("pool"), volume=src.get("volume"), device=d.get("device", "disk"),
                target=target.get("dev") if target is not None else None,
                readonly=d.find("readonly") is not None,
                shareable=d.find("shareable") is not None,
            ))
        return out

    def interfaces(self) -> list[Interface]:
        """Every network interface, in document order."""
        out = []
        for i in self.root.iterfind("devices/interface"):
            src, mac, model = i.find("source"), i.find("mac"), i.find("model")
            source = None
            if src is not None:
                source = next((src.get(a) for a in _SOURCE_ATTRS if src.get(a)), None)
            out.append(Interface(
                type=i.get("type", ""),
                source=source,
                mac=mac.get("address") if mac is not None else None,
                model=model.get("type") if model is not None else None,
            ))
        return out

    def rewrite_for_provision(self, *, name: str, uuid: str, disk_paths: dict[str, str],
                              disk_formats: dict[str, str],
                              domain_type: str | None = None) -> None:
        """Make this definition (a package's template) fit a new domain on a hypervisor.

        Set: `name`; `uuid` (also the SMBIOS system uuid in <sysinfo>, which libvirt requires
        to match); the root's type when `domain_type` is given (kvm, qemu).

        Disks: every disk whose target is in `disk_paths` becomes a file disk (type='file') on
        its new path, <driver type> set from `disk_formats` (raw or qcow2; driver name qemu
        unless one is set; cache, io, discard... kept); its old <source>, <auth> and
        <backingStore> go. A cdrom or floppy not in `disk_paths` is emptied (its medium was
        a file of the old host). Any other disk that names a source but has no new path is
        InvalidInput, as is a mapping for a target the domain does not have.

        Removed, as host-specific or as clashing with the domain it was made from:
        - every interface's MAC address is replaced by a fresh one (`new_mac`), and its
          <target dev> (the old host's tap device) dropped;
        - every <seclabel> (the old domain's SELinux/AppArmor labels and MCS categories; the
          new host's defaults apply, with labels of its own);
        - the <nvram> path (libvirt makes a fresh VARS file for the new name from the
          template, which is kept; the old domain's EFI variables are not carried over);
        - the value of <genid> (libvirt makes a new VM generation ID, as it should for a copy);
        - <emulator> (the old host's QEMU binary path; libvirt picks this host's);
        - fixed graphics ports (autoport instead), listen addresses other than loopback (the
          new host's configured address applies), graphics socket paths and passwords (the
          old machine's secret);
        - unix channel socket paths (libvirt makes them under the new domain's directory);
        - the static addresses of the domain it was made from (enomalism's <metadata> and
          `enomalism.` OEM strings): its guest must not take the old machine's address;
        - the root's id attribute (a live domain's number).

        Left as they are: the guest's ABI (machine type, CPU model, PCI addresses, disk serial
        numbers, SMBIOS serials), interface sources (network or bridge names: the caller sets
        those for the target host; an exported package names none: `fill_interface_sources`),
        host devices (<hostdev>: hardware the new host must have),
        serial/console log file paths.
        """
        if not name or not name.strip() or "/" in name:
            raise InvalidInput(f"'{name}' is not a usable domain name")
        try:
            uuid = str(uuidlib.UUID(uuid))
        except (ValueError, TypeError, AttributeError):
            raise InvalidInput(f"'{uuid}' is not a UUID") from None
        for target in disk_paths:
            fmt = disk_formats.get(target)
            if fmt not in _DISK_FORMATS:
                raise InvalidInput(f"disk {target}: format {fmt!r} is not one of raw, qcow2")
        self.name = name
        self.uuid = uuid
        if domain_type:
            self.root.set("type", domain_type)
        self.root.attrib.pop("id", None)
        for entry in self.root.iterfind("sysinfo/system/entry[@name='uuid']"):
            entry.text = uuid
        genid = self.root.find("genid")
        if genid is not None:
            genid.text = None
        self._rewrite_disks(disk_paths, disk_formats)
        self._rewrite_interfaces()
        self._drop_static_addresses()
        for label in list(self.root.iter("seclabel")):
            label.getparent().remove(label)
        self._drop_nvram_path()
        for emulator in self.root.findall("devices/emulator"):
            emulator.getparent().remove(emulator)
        self._rewrite_graphics()
        for src in self.root.iterfind("devices/channel[@type='unix']/source"):
            src.attrib.pop("path", None)

    def portable_consoles(self) -> None:
        """For export (package): a serial, console or parallel port on a host file, socket,
        pipe or device, or logging to a file, becomes a plain pty. Those name paths of the
        source host; on a target two machines from the same package would fight over one log
        file ("Cannot open log file ... busy"). The guest sees the same port."""
        for dev in self.root.iterfind("devices/*"):
            if dev.tag not in ("serial", "console", "parallel"):
                continue
            if dev.get("type") not in ("pty", "spicevmc", "null", "vc"):
                dev.set("type", "pty")
                for el in dev.findall("source") + dev.findall("protocol"):
                    dev.remove(el)
            for el in dev.findall("log"):
                dev.remove(el)

    def portable_interfaces(self) -> None:
        """For export (package): a network, bridge or direct (macvtap) interface loses what
        names the source host's networking (<source>, <target>, <virtualport>, <vlan>): the
        network called 'default' there is another network, or none, on a target. Provisioning
        fills the source from the target's networks (`unsourced_interfaces`,
        `fill_interface_sources`). Model, PCI address and the rest of the guest's view stay."""
        for iface in self.root.iterfind("devices/interface"):
            if iface.get("type") not in UNSOURCED_TYPES:
                continue
            for child in list(iface):
                if child.tag in ("source", "target", "virtualport", "vlan"):
                    iface.remove(child)

    def unsourced_interfaces(self) -> int:
        """How many network, bridge or direct interfaces name no source (an exported
        package's: left for the target's networks)."""
        return sum(1 for i in self.root.iterfind("devices/interface")
                   if i.get("type") in UNSOURCED_TYPES and not _has_source(i))

    def fill_interface_sources(self, source: str, *, libvirt_network: bool) -> int:
        """Put every interface that names no source on `source` (a libvirt network of the
        target, else a host bridge): how many were."""
        filled = 0
        for iface in self.root.iterfind("devices/interface"):
            if iface.get("type") not in UNSOURCED_TYPES or _has_source(iface):
                continue
            for old in iface.findall("source"):
                iface.remove(old)
            iface.set("type", "network" if libvirt_network else "bridge")
            src = etree.Element("source")
            src.set("network" if libvirt_network else "bridge", source)
            mac = iface.find("mac")
            if mac is not None:
                mac.addnext(src)
            else:
                iface.insert(0, src)
            filled += 1
        return filled

    def _rewrite_disks(self, paths: dict[str, str], formats: dict[str, str]) -> None:
        seen = set()
        for disk in self.root.iterfind("devices/disk"):
            target_el = disk.find("target")
            target = target_el.get("dev") if target_el is not None else None
            src = disk.find("source")
            if target in paths:
                seen.add(target)
                disk.set("type", "file")
                new = etree.Element("source", file=paths[target])
                if src is not None:
                    src.addprevious(new)
                    disk.remove(src)
                else:
                    disk.insert(0, new)
                for tag in ("auth", "backingStore"):
                    for el in disk.findall(tag):
                        disk.remove(el)
                driver = disk.find("driver")
                if driver is None:
                    driver = etree.Element("driver")
                    disk.insert(0, driver)
                if not driver.get("name"):
                    driver.set("name", "qemu")
                driver.set("type", formats[target])
            elif disk.get("device", "disk") in ("cdrom", "floppy"):
                if src is not None:
                    disk.remove(src)
                disk.set("type", "file")
            elif src is not None and src.attrib:
                raise InvalidInput(f"disk {target or '(no target)'} has no new path "
                                   "among the disks provisioned")
        unknown = set(paths) - seen
        if unknown:
            raise InvalidInput(f"the domain has no disk with target {', '.join(sorted(unknown))}")

    def _rewrite_interfaces(self) -> None:
        taken: set[str] = set()
        for iface in self.root.iterfind("devices/interface"):
            mac = iface.find("mac")
            if mac is None:
                mac = etree.Element("mac")
                iface.insert(0, mac)
            address = new_mac(taken)
            taken.add(address)
            mac.attrib.clear()
            mac.set("address", address)
            for target in iface.findall("target"):
                iface.remove(target)

    def _drop_static_addresses(self) -> None:
        for metadata in self.root.findall("metadata"):
            for old in metadata.findall(f"{{{METADATA_NS}}}network"):
                metadata.remove(old)
        for oem in self.root.findall("sysinfo/oemStrings"):
            for entry in oem.findall("entry"):
                if (entry.text or "").startswith("enomalism."):
                    oem.remove(entry)
            if len(oem) == 0:  # libvirt wants at least one entry; a sysinfo, something
                sysinfo = oem.getparent()
                sysinfo.remove(oem)
                if len(sysinfo) == 0:
                    self.root.remove(sysinfo)
                    for smbios in self.root.findall("os/smbios[@mode='sysinfo']"):
                        smbios.getparent().remove(smbios)

    def _drop_nvram_path(self) -> None:
        for nvram in self.root.findall("os/nvram"):
            template = {k: v for k, v in nvram.attrib.items()
                        if k in ("template", "templateFormat")}
            if not template:
                nvram.getparent().remove(nvram)
                continue
            tail = nvram.tail
            nvram.clear()  # text, children and attributes
            nvram.attrib.update(template)
            nvram.tail = tail

    def _rewrite_graphics(self) -> None:
        self.drop_passwords()
        for g in self.root.iterfind("devices/graphics"):
            if any(g.get(a) not in (None, "-1") for a in ("port", "tlsPort", "websocket")) \
                    or g.get("autoport") == "no":
                for a in ("port", "tlsPort", "websocket"):
                    g.attrib.pop(a, None)
                g.set("autoport", "yes")
            if g.get("listen") and g.get("listen") not in LOOPBACK_LISTEN:
                g.attrib.pop("listen")
            for listen in g.findall("listen"):
                kind = listen.get("type")
                if kind == "address" and listen.get("address") not in (None, *LOOPBACK_LISTEN):
                    g.remove(listen)
                elif kind == "socket":
                    listen.attrib.pop("socket", None)

    def keep_passwords(self, current: "DomainXML") -> None:
        """Give each graphics device without a password the one the device of its type has in
        `current` (the definition read with its secrets): XML that readers get carries none,
        and defining it again must not open the console."""
        old = {g.get("type"): g.get("passwd") for g in current.root.iterfind("devices/graphics")
               if g.get("passwd") is not None}
        for g in self.root.iterfind("devices/graphics"):
            if g.get("passwd") is None and g.get("type") in old:
                g.set("passwd", old[g.get("type")])

    def mark_seed(self, path: str) -> None:
        """Record in <metadata> that the CD-ROM at `path` is the machine's cloud-init seed:
        made for it and deleted with it (totaldelete), unlike an ISO it was given."""
        metadata = self.root.find("metadata")
        if metadata is None:
            metadata = etree.SubElement(self.root, "metadata")
        for old in metadata.findall(f"{{{SEED_NS}}}seed"):
            metadata.remove(old)
        etree.SubElement(metadata, f"{{{SEED_NS}}}seed", nsmap={"ci": SEED_NS}).set("path", path)

    def seed_paths(self) -> set[str]:
        return {e.get("path") for e in self.root.iterfind(f"metadata/{{{SEED_NS}}}seed")}

    def drop_passwords(self) -> None:
        for g in self.root.iterfind("devices/graphics"):
            g.attrib.pop("passwd", None)

    def set_static_addresses(self, nics: list["StaticNic"]) -> None:
        """Join interface i to nics[i] (its libvirt network or bridge, with its MAC), adding
        virtio interfaces where the domain has fewer, and hand the addresses to the guest:
        in <metadata> for tools that read the domain, and as SMBIOS OEM strings the guest
        reads itself (`dmidecode -t 11`): `enomalism.net<i>=<mac>,<address>/<prefix>,<gw>`."""
        devices = self.root.find("devices")
        if devices is None:
            devices = etree.SubElement(self.root, "devices")
        existing = list(devices.iterfind("interface"))
        for i, nic in enumerate(nics):
            iface = existing[i] if i < len(existing) else etree.SubElement(devices, "interface")
            for child in list(iface):
                if child.tag in ("source", "mac", "target", "virtualport", "vlan"):
                    iface.remove(child)
            iface.attrib.clear()
            iface.set("type", "network" if nic.libvirt_network else "bridge")
            etree.SubElement(iface, "mac").set("address", nic.mac)
            src = etree.SubElement(iface, "source")
            src.set("network" if nic.libvirt_network else "bridge", nic.source)
            if iface.find("model") is None:
                etree.SubElement(iface, "model").set("type", "virtio")
        self._address_metadata(nics)
        self._address_oem_strings(nics)

    def _address_metadata(self, nics: list["StaticNic"]) -> None:
        metadata = self.root.find("metadata")
        if metadata is None:
            metadata = etree.SubElement(self.root, "metadata")
        for old in metadata.findall(f"{{{METADATA_NS}}}network"):
            metadata.remove(old)
        net = etree.SubElement(metadata, f"{{{METADATA_NS}}}network", nsmap={"enm": METADATA_NS})
        for nic in nics:
            el = etree.SubElement(net, f"{{{METADATA_NS}}}interface")
            for k, v in (("mac", nic.mac), ("address", nic.address), ("prefix", str(nic.prefix)),
                         ("gateway", nic.gateway or ""), ("network", nic.network)):
                el.set(k, v)

    def _address_oem_strings(self, nics: list["StaticNic"]) -> None:
        sysinfo = next((x for x in self.root.findall("sysinfo") if x.get("type") == "smbios"),
                       None)
        if sysinfo is None:
            sysinfo = etree.SubElement(self.root, "sysinfo", type="smbios")
        oem = sysinfo.find("oemStrings")
        if oem is None:
            oem = etree.SubElement(sysinfo, "oemStrings")
        for entry in [e for e in oem.findall("entry") if (e.text or "").startswith("enomalism.")]:
            oem.remove(entry)
        for i, nic in enumerate(nics):
            etree.SubElement(oem, "entry").text = \
                f"enomalism.net{i}={nic.mac},{nic.address}/{nic.prefix},{nic.gateway or ''}"
        os_el = self.root.find("os")
        if os_el is not None and os_el.find("smbios") is None:
            etree.SubElement(os_el, "smbios").set("mode", "sysinfo")

    def to_string(self) -> str:
        return etree.tostring(self.root, encoding="unicode")
