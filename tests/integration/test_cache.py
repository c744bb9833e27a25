"""The base-image cache on the real libvirtd: `GET /rest/cache/` shows each base volume with its
package and users as libvirt sees them, and a prune removes a base only once its package is no
longer cached and nothing on the hypervisor backs onto it. Another installation's base volumes
are never removed."""

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.provision_helpers import (
    FeedServer,
    Pkg,
    build_package,
    feed_item,
    make_qcow2,
    publish,
    qemu_img,
    wait_tx,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedServer]:
    d = tmp_path_factory.mktemp("cache-pkgs")
    tiny: Pkg = build_package(d / "tiny.xvm2", make_qcow2(d / "tiny.qcow2", 64), name="tiny")
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, tiny, "/p/tiny.xvm2")])
        yield srv
    finally:
        srv.close()


def bases_in(qemu, pool: str) -> dict[str, dict]:
    """The cache as the API shows it, for the test's own pool only (the host is shared)."""
    body = qemu.api.ok("GET", "/rest/cache/", params={"hypervisor": qemu.hv})
    return {b["name"]: b for b in body["bases"] if b["pool"] == pool}


def prune(qemu) -> dict:
    body = qemu.api.ok("POST", "/rest/cache/prune/", data={"hypervisor": qemu.hv})
    done = wait_tx(qemu.api, body["txid"])
    assert done["data"]["state"] == "done", done
    return done["data"]["result"]


def overlay_xml(name: str, backing: str) -> str:
    return (f"<volume><name>{name}</name><capacity unit='MiB'>64</capacity>"
            "<target><format type='qcow2'/></target>"
            f"<backingStore><path>{backing}</path><format type='qcow2'/></backingStore>"
            "</volume>")


def test_a_base_goes_only_when_nothing_uses_it(qemu, feed):
    pkg = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": feed.url("/feed.xml")})
    [pkg_uuid] = [p["uuid"] for p in pkg["packages"]]
    pool = qemu.scratch.pool.name()
    name = qemu.scratch.domain_name()
    body = qemu.api.ok("POST", f"/rest/machine/{qemu.api.local_host()}/actions/provision/",
                       data={"pkguuid": pkg_uuid, "hvmuuid": qemu.hv, "name": name,
                             "pool": pool})
    qemu.scratch.track(body["newuuid"])
    assert wait_tx(qemu.api, body["txid"])["data"]["state"] == "done"
    base_name = f"enomalism-base-{pkg_uuid}-vda.qcow2"

    # Another installation's base in the same pool: listed, never removed.
    foreign = f"enomalism-base-{uuid.uuid4()}-vda.qcow2"
    qemu.scratch.pool.createXML(
        f"<volume><name>{foreign}</name><capacity unit='MiB'>1</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)

    bases = bases_in(qemu, pool)
    assert set(bases) == {base_name, foreign}
    base = bases[base_name]
    assert (base["package"], base["package_name"], base["cached"], base["ours"]) == \
        (pkg_uuid, "tiny", True, True)
    assert base["domains"] == [name] and base["volumes"] == [f"{pool}/{name}-vda.qcow2"]
    assert base["capacity"] == 64 << 20 and base["allocation"] > 0
    assert (base["unused"], base["kept"]) == (False, "its package is cached")
    assert (bases[foreign]["ours"], bases[foreign]["unused"]) == (False, False)
    assert bases[foreign]["kept"] == "made by another installation"

    # The package uncached: the machine still backs onto the base, so it stays.
    qemu.api.ok("DELETE", f"/rest/vmfeed/repo/package/{pkg_uuid}/")
    assert bases_in(qemu, pool)[base_name]["kept"] == "in use"
    prune(qemu)
    assert base_name in qemu.scratch.volume_names()

    # The package deleted and the machine too, but a volume made behind the API's back (a
    # snapshot, say) backs onto the base: libvirt's word counts, not the database's. The base
    # is still known as this installation's (its provision recorded it).
    qemu.api.ok("DELETE", f"/rest/vmfeed/{pkg_uuid}/")
    qemu.action(body["newuuid"], "totaldelete")
    base = bases_in(qemu, pool)[base_name]
    assert (base["package_name"], base["ours"], base["unused"]) == (None, True, True)
    base_path = base["path"]
    snap = qemu.scratch.pool.createXML(overlay_xml("enomalism-test-snap.qcow2", base_path), 0)
    seen = bases_in(qemu, pool)[base_name]
    assert seen["domains"] == [] and seen["volumes"] == [f"{pool}/enomalism-test-snap.qcow2"]
    prune(qemu)
    assert base_name in qemu.scratch.volume_names()

    # Nothing uses it any more: the list says so, and a prune removes it (and only it).
    snap.delete(0)
    seen = bases_in(qemu, pool)[base_name]
    assert (seen["unused"], seen["kept"]) == (True, None)
    result = prune(qemu)
    assert {(r["pool"], r["name"]) for r in result["removed"]} == {(pool, base_name)}
    names = qemu.scratch.volume_names()
    assert base_name not in names and foreign in names
    assert set(bases_in(qemu, pool)) == {foreign}


def test_a_domain_using_a_base_directly_keeps_it(qemu, feed):
    """A domain defined outside the API whose disk is the base itself."""
    pkg = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": feed.url("/feed.xml")})
    [pkg_uuid] = [p["uuid"] for p in pkg["packages"]]
    pool = qemu.scratch.pool.name()
    base_name = f"enomalism-base-{pkg_uuid}-vda.qcow2"
    vol = qemu.scratch.pool.createXML(
        f"<volume><name>{base_name}</name><capacity unit='MiB'>1</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)
    name = qemu.scratch.domain_name()
    qemu.host.conn.defineXML(qemu.scratch.domain_xml(name, vol.path()))
    seen = bases_in(qemu, pool)[base_name]
    assert (seen["ours"], seen["cached"], seen["domains"]) == (True, False, [name])
    assert seen["kept"] == "in use"
    prune(qemu)
    assert base_name in qemu.scratch.volume_names()


def test_a_stopped_domain_on_an_overlay_outside_every_pool_keeps_the_base(qemu, feed,
                                                                          tmp_path):
    """libvirt does not show the backing chain of a stopped domain's disk that lies in no
    pool; on the local hypervisor the chain is read from the image (qemu-img)."""
    pkg = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": feed.url("/feed.xml")})
    [pkg_uuid] = [p["uuid"] for p in pkg["packages"]]
    pool = qemu.scratch.pool.name()
    base_name = f"enomalism-base-{pkg_uuid}-vda.qcow2"
    base = qemu.scratch.pool.createXML(
        f"<volume><name>{base_name}</name><capacity unit='MiB'>1</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)
    outside = tmp_path / "outside.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", base.path(), "-F", "qcow2", str(outside))
    name = qemu.scratch.domain_name()
    qemu.host.conn.defineXML(qemu.scratch.domain_xml(name, str(outside)))
    seen = bases_in(qemu, pool)[base_name]
    assert (seen["domains"], seen["volumes"], seen["kept"]) == ([name], [], "in use")
    prune(qemu)
    assert base_name in qemu.scratch.volume_names()
