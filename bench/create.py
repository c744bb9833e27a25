"""Create from an image is O(1) in the image's size (issue 16): `PUT /rest/machines/` with
`image` (a 1 GiB qcow2, fully allocated) until its `create` transaction is done, polled every
10 ms, against `qemu-img create -f qcow2 -b <image> -F qcow2` of the same overlay on the same
disk, interleaved in the same run. Target: under 0.5 s end to end.

The server is `enomalism serve --hypervisor qemu:///system` in its own process (bench/common.py).
The image lives in a transient dir pool `enomalism-bench-<random>` in a temporary directory and
is registered as an Image row straight in the server's database (the upload API is branch
`images`'). Every machine made here is deleted through the API (totaldelete), then anything
left by name through libvirt, then the pool and its directory, whatever happens. Nothing else
is touched. Never asserts: a benchmark, not a test. Takes about a minute.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ROOT,
    client,
    enomalism_server,
    exit_on_sigterm,
    load,
    median,
    table,
    timed,
)

sys.path.insert(0, str(ROOT / "src"))
from enomalism.store.db import Database  # noqa: E402
from enomalism.store.models import Image  # noqa: E402

URI = "qemu:///system"
GiB = 1 << 30
FINAL = ("done", "failed", "cancelled")


def wait_tx(api, txid: str) -> dict:  # noqa: ANN001
    while True:
        data = api.get(f"/rest/transaction/{txid}/").json()["data"]
        if data["state"] in FINAL:
            if data["state"] != "done":
                raise RuntimeError(f"create failed: {data['error']}")
            return data
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=7, help="rounds (default 7)")
    args = ap.parse_args()
    exit_on_sigterm()
    tag = f"enomalism-bench-{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    pool_dir = work / "pool"
    pool_dir.mkdir()
    os.chmod(work, 0o755)
    os.chmod(pool_dir, 0o755)
    conn = libvirt.open(URI)
    pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>{tag}</name><target><path>"
                                     f"{pool_dir}</path></target></pool>", 0)
    server, made = None, []
    try:
        image = pool_dir / "image.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=full",
                        str(image), "1G"], check=True)
        pool.refresh(0)
        server = enomalism_server(work / "data", [URI])
        server.wait_ready()
        api = client(server.url)
        hosts = api.get("/rest/hosts/").json()["hosts"]
        hv = next(h["uuid"] for host in hosts for h in api.get(
            f"/rest/machine/{host['uuid']}/hypervisors/").json()["hypervisors"]
            if h["virt_url"] == URI)
        db = Database(f"sqlite:///{work / 'data' / 'enomalism.db'}")
        with db.session() as s:
            img = Image(name=f"{tag}-image", format="qcow2", size=image.stat().st_size,
                        virtual_size=GiB, hypervisor_uuid=hv, pool=tag, path=str(image),
                        state="ready")  # (uploading by default since the upload API)
            s.add(img)
            s.flush()
            img_uuid = img.uuid
        db.dispose()
        print(f"image: {image.stat().st_size // (1 << 20)} MiB allocated, "
              f"load before {load()}")
        ours, baseline = [], []
        for i in range(args.n):
            name = f"{tag}-{i}"

            def create(name: str = name) -> None:
                body = api.put("/rest/machines/", json={
                    "name": name, "image": img_uuid, "hvmuuid": hv, "pool": tag,
                    "memory": 64, "virt_type": "qemu"}).json()
                if "machine" not in body:
                    raise RuntimeError(f"create refused: {body}")
                made.append(body["machine"])
                wait_tx(api, body["txid"])
            ours.append(timed(create))
            overlay = pool_dir / f"baseline-{i}.qcow2"
            baseline.append(timed(lambda overlay=overlay: subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
                 str(overlay)], check=True)))
            overlay.unlink()
            api.post(f"/rest/machine/{made[-1]}/actions/totaldelete/")
        rows = [["create from the 1 GiB image (API, transaction done)", f"{median(ours):.0f}",
                 f"{max(ours):.0f}"],
                ["qemu-img create -b (same overlay)", f"{median(baseline):.0f}",
                 f"{max(baseline):.0f}"]]
        print(table(["measured", "median ms", "max ms"], rows))
        print(f"ratio of medians: {median(ours) / median(baseline):.1f}; target under 500 ms: "
              f"{'met' if median(ours) < 500 else 'missed'}; load after {load()}")
    finally:
        if server is not None:
            server.stop()
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(tag):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
