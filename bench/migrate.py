"""Live migration through the server against `virsh migrate --live --copy-storage-all`.

An idle guest of 512 MiB with a 1 GiB qcow2 disk (200 MiB random bytes and 300 MiB of the
host's binaries in it, the rest never written: bench/provision.py's mixed image), running on
this machine's libvirtd, moves to a second libvirtd on this machine (scripts/test-host.sh, a
network namespace of its own reached over qemu+tcp; docs/testing.md):

- **the server**: `POST /rest/machine/<UUID>/ action=set_parent` (with the target's pool),
  polled every 50 ms until its `migrate` transaction is done: the empty volume made on the
  target, the managed migration with the disk mirrored over NBD, the inventory written, the
  old disk deleted.
- **virsh**: the same steps by hand, the volume made with `virsh vol-create-as` and the
  target's definition with the new disk path written beforehand (not timed), then
  `virsh migrate --live --copy-storage-all --persistent --undefinesource --xml ...` timed.

Runs alternate (server, virsh, server, ...); before each, the guest is defined and started
afresh on this machine from a copy of the same disk (not timed). The figure: the median of
the server's times over the median of virsh's (target: at most 1.2), and the downtime libvirt
reports for each (`domjobinfo --completed` on the target; the transaction's `downtime_ms`).
The guest has no OS (SeaBIOS finds nothing to boot and waits): its memory is idle. Everything
made (second host, pools, domains, files, server) is removed at the end. Never asserts.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exit_on_sigterm, load, median, table  # noqa: E402
from provision import URI, Bench, GiB, mixed_image, verdict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEST_HOST = REPO / "scripts" / "test-host.sh"


def guest_xml(name: str, disk: Path) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>512</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            "<memballoon model='none'/></devices></domain>")


def virsh(*args: str) -> str:
    r = subprocess.run(["virsh", *args], capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class Run:
    """This bench's objects on both hosts."""

    def __init__(self, b: Bench, second_uri: str) -> None:
        self.b, self.second_uri = b, second_uri
        self.dst = libvirt.open(second_uri)
        self.src_pool, src_dir = b.pool("src")
        self.template = src_dir.parent / "template.qcow2"
        raw = mixed_image(src_dir.parent / "mixed.raw", GiB)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(self.template)],
                       check=True)
        raw.unlink()
        self.dst_dir = b.tmp / "pool-dst"
        self.dst_dir.mkdir()
        self.dst_pool = f"{b.tag}-dst"
        self.dst.storagePoolCreateXML(
            f"<pool type='dir'><name>{self.dst_pool}</name><target><path>{self.dst_dir}"
            "</path></target></pool>", 0)
        self.src_dir = src_dir
        self.n = 0

    def fresh_guest(self) -> tuple[str, Path]:
        """A new domain on this machine, started, on a fresh copy of the disk."""
        self.n += 1
        name = f"{self.b.tag}-{self.n}"
        disk = self.src_dir / f"{name}.qcow2"
        shutil.copyfile(self.template, disk)
        os.chmod(disk, 0o644)
        self.b.conn.storagePoolLookupByName(self.src_pool).refresh(0)
        return name, disk

    def remove_on_target(self, name: str) -> None:
        try:
            dom = self.dst.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        pool = self.dst.storagePoolLookupByName(self.dst_pool)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)

    def close(self) -> None:
        try:
            self.remove_on_target("")
            self.dst.storagePoolLookupByName(self.dst_pool).destroy()
        except libvirt.libvirtError:
            pass
        self.dst.close()


def server_move(run: Run, hv2: str) -> tuple[float, float | None]:
    b = run.b
    name, disk = run.fresh_guest()
    uuid = b.ok("PUT", "/rest/machines/", data={"xmldesc": guest_xml(name, disk),
                                                "hvmuuid": b.hv})["machine"]
    b.machines.append(uuid)
    b.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    time.sleep(1.0)  # SeaBIOS has looked for a disk to boot and idles
    t0 = time.perf_counter()
    body = b.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "set_parent", "puuid": hv2, "pool": run.dst_pool})
    tx = b.wait(body["txid"], poll=0.05)
    ms = (time.perf_counter() - t0) * 1000.0
    b.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")  # there: its disk goes too
    b.machines.remove(uuid)
    run.remove_on_target(name)
    return ms, tx["result"].get("downtime_ms")


def virsh_move(run: Run) -> tuple[float, float | None]:
    b = run.b
    name, disk = run.fresh_guest()
    dom = b.conn.defineXML(guest_xml(name, disk))
    try:
        dom.create()
        time.sleep(1.0)
        new = run.dst_dir / disk.name
        virsh("-c", run.second_uri, "vol-create-as", run.dst_pool, disk.name,
              str(GiB), "--format", "qcow2")
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE).replace(str(disk), str(new))
        dest_xml = b.tmp / f"{name}.xml"
        dest_xml.write_text(xml)
        t0 = time.perf_counter()
        virsh("-c", URI, "migrate", "--live", "--copy-storage-all", "--persistent",
              "--undefinesource", "--xml", str(dest_xml), "--persistent-xml", str(dest_xml),
              name, run.second_uri)
        ms = (time.perf_counter() - t0) * 1000.0
        info = virsh("-c", run.second_uri, "domjobinfo", "--completed", name)
        found = re.search(r"Total downtime:\s+(\d+)", info)
        return ms, float(found[1]) if found else None
    finally:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        disk.unlink(missing_ok=True)
        run.remove_on_target(name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=3, help="runs of each (default 3)")
    args = p.parse_args()
    exit_on_sigterm()
    name = f"bench-{os.getpid()}"
    r = subprocess.run([str(TEST_HOST), "start", name], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"no second libvirt host: {r.stderr.strip()}")
    second_uri = r.stdout.strip()
    b = Bench()
    run = None
    try:
        b.start_server()
        address = second_uri.split("//")[1].split("/")[0]
        node = b.ok("PUT", "/rest/hosts/", data={"name": name, "address": address})["machine"]
        hvs = b.ok("POST", f"/rest/machine/{node}/hypervisors/",
                   data={"virt_url": second_uri, "virt_class": "qemu"})["hypervisors"]
        hv2 = next(h["uuid"] for h in hvs if h["virt_url"] == second_uri)
        run = Run(b, second_uri)
        ours, theirs = [], []
        for _ in range(args.n):
            ours.append(server_move(run, hv2))
            theirs.append(virsh_move(run))
        report(ours, theirs)
    finally:
        if run is not None:
            run.close()
        b.close()
        subprocess.run([str(TEST_HOST), "stop", name], capture_output=True, text=True)


def report(ours: list[tuple[float, float | None]],
           theirs: list[tuple[float, float | None]]) -> None:
    def down(xs: list[tuple[float, float | None]]) -> str:
        known = [d for _, d in xs if d is not None]
        return f"{median(known):.0f}" if known else "-"
    o, t = median([ms for ms, _ in ours]), median([ms for ms, _ in theirs])
    ratio = o / t
    print(f"# live migration, 512 MiB idle guest, 1 GiB disk (load {load()})")
    print(table(["way", "median ms", "downtime ms (libvirt)", "runs"], [
        ["enomalism set_parent", f"{o:.0f}", down(ours), str(len(ours))],
        ["virsh migrate --live --copy-storage-all", f"{t:.0f}", down(theirs),
         str(len(theirs))]]))
    print(f"ratio {ratio:.2f} (target <= 1.2): {verdict(ratio <= 1.2)}")


if __name__ == "__main__":
    main()
