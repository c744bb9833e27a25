"""From provision to the guest holding its leased address, against the same guest defined with
virsh on the same network with the same DHCP host entry, in the same run.

The guest is the tests' tiny real guest (tests/guest: the Debian cloud kernel and a busybox
initramfs whose udhcpc prints `GUEST-IP=<address>` on the serial console), under TCG. Each
round, interleaved:

- **enomalism**: `POST /rest/machine/<host>/actions/provision/` onto the local host, whose
  cluster a static network on the bench's libvirt network serves; `GET /rest/transaction/`
  polled every 20 ms until done; the domain's serial console pointed at a file and its type set
  to qemu through libvirt-python (what the bench needs to see the guest, and TCG: nested KVM
  stops real kernels here); `POST .../actions/create/`; the serial file polled every 20 ms
  until `GUEST-IP=`. Then `totaldelete` (not timed).
- **virsh baseline**: what an operator does by hand for the same guest: a qcow2 overlay on the
  same base volume (`qemu-img create -b`), the same DHCP host entry (MAC, address, name) added
  to the same libvirt network live (`net-update add ip-dhcp-host`), the same domain defined and
  started, the serial file polled until `GUEST-IP=`. Then destroyed, undefined, the entry
  removed and its dnsmasq lease released (not timed).

Both guests get the same address (the network's lowest free one, freed after each round),
which the bench checks. Printed: the medians, their difference (what enomalism adds; the target
is under 1 s), ratio, and the median of each round's difference. The guest's boot under TCG
dominates both and swings with the host's load: run it on a quiet machine.

Everything is named `enomalism-bench-<random>`: a transient libvirt network on a free
10.x.y.0/24, a transient dir pool in a temporary directory, the domains; all removed whatever
happens. Takes about 2 minutes with the default 3 rounds (`--rounds N`).
"""

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, client, enomalism_server, exit_on_sigterm, load, median  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from tests import guest  # noqa: E402
from tests.integration.provision_helpers import (  # noqa: E402
    FeedServer,
    build_package,
    feed_item,
    publish,
)

URI = "qemu:///system"
TAG = f"enomalism-bench-{secrets.token_hex(3)}"
TEMPLATE = (
    "<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
    "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
    "<features><acpi/><apic/></features><on_poweroff>destroy</on_poweroff>"
    "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>{nic}"
    "<serial type='pty'><target port='0'/></serial><memballoon model='none'/></devices>"
    "</domain>")


def wait_ip(log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("GUEST-IP="):
                    return line.split("=", 1)[1].strip()
        time.sleep(0.02)
    raise RuntimeError(f"no GUEST-IP in {log}")


def serial_to_file(xml: str, log: Path) -> str:
    root = ElementTree.fromstring(xml)
    root.set("type", "qemu")
    devices = root.find("devices")
    for el in devices.findall("serial") + devices.findall("console"):
        devices.remove(el)
    serial = ElementTree.SubElement(devices, "serial", type="file")
    ElementTree.SubElement(serial, "source", path=str(log))
    ElementTree.SubElement(serial, "target", port="0")
    return ElementTree.tostring(root, encoding="unicode")


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.conn = libvirt.open(URI)
        self.net = self.pool = self.server = self.feed = None
        self.domains: list[str] = []

    def setup(self) -> None:
        for _ in range(30):
            self.subnet = f"10.{secrets.randbelow(64) + 192}.{secrets.randbelow(256)}"
            try:
                self.net = self.conn.networkCreateXML(
                    f"<network><name>{TAG}</name><bridge name='enmb{secrets.token_hex(4)}'/>"
                    f"<ip address='{self.subnet}.1' netmask='255.255.255.0'><dhcp>"
                    f"<range start='{self.subnet}.100' end='{self.subnet}.199'/></dhcp></ip>"
                    "</network>")
                break
            except libvirt.libvirtError:
                continue
        pool_dir = self.tmp / "pool"
        pool_dir.mkdir()
        self.pool = self.conn.storagePoolCreateXML(
            f"<pool type='dir'><name>{TAG}</name><target><path>{pool_dir}</path></target>"
            "</pool>", 0)
        pkg = build_package(self.tmp / "guest.xvm2", guest.image(), name="bench-tiny",
                            virt_class="qemu", domain_xml=TEMPLATE.format(
                                name="template", disk="/nowhere.qcow2",
                                nic="<interface type='user'><model type='virtio'/></interface>"))
        self.feed = FeedServer()
        publish(self.feed, [feed_item(self.feed, pkg, "/p/guest.xvm2")])
        self.server = enomalism_server(self.tmp / "data", [URI])
        self.server.wait_ready()
        self.api = client(self.server.url)
        self.pkg = self.ok("PUT", "/rest/vmfeed/", json={"url": self.feed.url("/feed.xml")}
                           )["packages"][0]["uuid"]
        self.host = next(h["uuid"] for h in self.ok("GET", "/rest/hosts/")["hosts"]
                         if h["is_local"])
        self.hv = self.ok("GET", f"/rest/machine/{self.host}/hypervisors/")["hypervisors"][0]
        cluster = self.ok("PUT", "/rest/cluster/", json={"cluster_name": TAG})["cluster"]["uuid"]
        self.ok("POST", f"/rest/machine/{self.host}/clusters/", json={"clusters": cluster})
        self.netuuid = self.ok("PUT", "/rest/networks/", json={
            "name": TAG, "bridge": TAG, "cluster": cluster, "ip": f"{self.subnet}.0",
            "netmask": "24", "gateway": f"{self.subnet}.1"})["network"]["uuid"]
        self.ok("POST", f"/rest/networks/{self.netuuid}/iprange/",
                json={"start_ip": f"{self.subnet}.20", "end_ip": f"{self.subnet}.29"})

    def ok(self, method: str, path: str, **kw: object) -> dict:
        r = self.api.request(method, path, **kw)
        body = r.json()
        if r.status_code != 200 or body.get("errno"):
            raise RuntimeError(f"{method} {path}: {r.status_code} {body}")
        return body

    def enomalism(self, i: int) -> tuple[float, str, str]:
        name, log = f"{TAG}-e{i}", self.tmp / f"e{i}.log"
        self.domains.append(name)
        t0 = time.perf_counter()
        body = self.ok("POST", f"/rest/machine/{self.host}/actions/provision/", json={
            "pkguuid": self.pkg, "hvmuuid": self.hv["uuid"], "name": name,
            "pool": self.pool.name()})
        uuid = body["newuuid"]
        while (tx := self.ok("GET", f"/rest/transaction/{body['txid']}/")["data"])["state"] \
                not in ("done", "failed", "cancelled"):
            time.sleep(0.02)
        if tx["state"] != "done":
            raise RuntimeError(f"provision {tx['state']}: {tx}")
        dom = self.conn.lookupByUUIDString(uuid)
        self.conn.defineXML(serial_to_file(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), log))
        self.ok("POST", f"/rest/machine/{uuid}/actions/create/")
        ip = wait_ip(log)
        took = time.perf_counter() - t0
        lease = self.ok("GET", f"/rest/machine/{uuid}/")["info"]["leases"][0]["address"]
        self.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
        return took, ip, lease

    def virsh(self, i: int, ip: str) -> tuple[float, str]:
        name, log = f"{TAG}-v{i}", self.tmp / f"v{i}.log"
        self.domains.append(name)
        self.pool.refresh(0)
        base = next(v.path() for v in self.pool.listAllVolumes(0)
                    if v.name().startswith("enomalism-base-"))
        disk = self.tmp / "pool" / f"{name}.qcow2"
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        host = f"<host mac='{mac}' name='{name}' ip='{ip}'/>"
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        xml = serial_to_file(TEMPLATE.format(
            name=name, disk=disk, nic=f"<interface type='network'><mac address='{mac}'/>"
            f"<source network='{TAG}'/><model type='virtio'/></interface>"), log)
        t0 = time.perf_counter()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                        str(disk)], check=True)
        self.net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host, flags)
        dom = self.conn.defineXML(xml)
        dom.create()
        got = wait_ip(log)
        took = time.perf_counter() - t0
        dom.destroy()
        dom.undefine()
        self.net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host, flags)
        subprocess.run(["dhcp_release", self.net.bridgeName(), ip, mac], check=False)
        time.sleep(0.2)  # libvirt's lease file follows dnsmasq's
        disk.unlink()
        return took, got

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.feed is not None:
            self.feed.close()
        for name in self.domains:
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        for obj in (self.pool, self.net):
            if obj is not None:
                try:
                    obj.destroy()
                except libvirt.libvirtError:
                    pass
        self.conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    exit_on_sigterm()
    libvirt.registerErrorHandler(lambda *_: None, None)  # lookups of what is gone already
    tmp = Path(tempfile.mkdtemp(prefix=TAG))
    tmp.chmod(0o755)
    bench = Bench(tmp)
    print(f"load before: {load()}")
    try:
        bench.setup()
        bench.enomalism(0)  # the package retrieved and its base volume made: not timed
        ours, theirs = [], []
        for i in range(1, args.rounds + 1):
            took, ip, lease = bench.enomalism(i)
            if ip != lease:
                print(f"round {i}: the guest has {ip}, the API leased {lease}")
            ours.append(took)
            took, got = bench.virsh(i, lease)
            if got != lease:
                print(f"round {i}: the virsh guest has {got}, its entry says {lease}")
            theirs.append(took)
            print(f"round {i}: enomalism {ours[-1]:.2f} s, virsh {theirs[-1]:.2f} s ({ip})")
        e, v = median(ours), median(theirs)
        paired = median([a - b for a, b in zip(ours, theirs, strict=True)])
        print(f"provision to the leased address, median of {args.rounds}: enomalism {e:.2f} s,"
              f" virsh {v:.2f} s; enomalism adds {e - v:+.2f} s (x{e / v:.2f}); median of the"
              f" rounds' differences {paired:+.2f} s")
    finally:
        bench.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load after: {load()}")


if __name__ == "__main__":
    main()
