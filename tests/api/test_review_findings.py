"""A second look, as a non-administrator, at what the merged isolation layers (issue 12) and
the audit log (issue 13, item 4) still let through. Each test is one finding: it failed on the
merged branch, and stays as the regression test of its fix."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from enomalism.store.models import Package
from tests.api.accounts import Account, audit, grant, new_user
from tests.api.test_xml_policy import _volume, vm_xml
from tests.conftest import Api, expect_error, serve, unchanged
from tests.fakehost import write_host


@dataclass
class World:
    api: Api
    hv: str
    alice: Account
    alice_vol: str  # a volume of a machine alice may modify
    names: Iterator[int]

    def define(self, xml: str) -> object:
        return self.api.put("/rest/machines/", data={"xmldesc": xml, "hvmuuid": self.hv},
                            auth=self.alice.auth)

    def name(self) -> str:
        return f"review-{next(self.names)}"


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """alice (not an administrator) may control the hypervisor and modify one machine."""
    d = tmp_path_factory.mktemp("review")
    with serve(d / "data", write_host(d / "host.xml", [])) as api:
        hv = api.hypervisors()[0]["uuid"]
        alice = new_user(api)
        path = _volume(api, f"{alice.name}.img")
        uuid = api.ok("PUT", "/rest/machines/", data={
            "xmldesc": vm_xml(f"{alice.name}-base", path), "hvmuuid": hv})["machine"]
        grant(api, uuid, "modify", user=alice.uuid)
        grant(api, hv, "control", user=alice.uuid)
        yield World(api, hv, alice, path, iter(range(1, 10**6)))


# -- domain XML --------------------------------------------------------------------------------


def on_crash(xml: str, action: str) -> str:
    end = "<on_reboot>restart</on_reboot>"
    return xml.replace(end, f"{end}<on_crash>{action}</on_crash>", 1)


@pytest.mark.parametrize("action", ["coredump-destroy", "coredump-restart"])
def test_on_crash_coredump_is_refused_like_a_watchdog_dump(w, action):
    """`<watchdog action='dump'>` is refused because it dumps guest memory on the host's disk
    (libvirt's auto_dump_path); `<on_crash>coredump-*</on_crash>` does the same on a guest
    panic and was let through (<on_crash> took any value)."""
    xml = on_crash(vm_xml(w.name(), w.alice_vol), action)
    with unchanged(w.api):
        body = expect_error(w.define(xml), 403, 1110)
    assert f"<on_crash>{action}</on_crash>" in body["message"], body


def test_on_crash_destroy_is_still_accepted(w):
    xml = on_crash(vm_xml(w.name(), w.alice_vol), "destroy")
    r = w.define(xml)
    assert r.status_code == 200, r.text


# -- the audit log -------------------------------------------------------------------------------


@pytest.mark.parametrize("why", ["cross-site", "too-large", "declared-too-large"])
def test_a_change_refused_before_any_route_is_in_the_audit_log(w, why):
    before = {e["id"] for e in audit(w.api)}
    if why == "cross-site":  # a page elsewhere using alice's cached Basic credentials
        r = w.api.client.put("/rest/group/create/", data={"group_name": "review-csrf"},
                             auth=w.alice.auth, headers={"Origin": "http://evil.example"})
        expect_error(r, 403, 1140)
    else:
        limit = w.api.app.state.settings.max_body_bytes
        body = b"group_name=" + b"a" * (limit + 1)
        r = w.api.client.put("/rest/group/create/", auth=w.alice.auth,
                             content=iter([body]) if why == "too-large" else body,  # chunked
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        expect_error(r, 413, 1040)
    new = [e for e in audit(w.api) if e["id"] not in before]
    assert [(e["action"], e["errno"]) for e in new] == [
        ("group.create", r.json()["errno"])], new


# -- exporting -------------------------------------------------------------------------------------


def test_provisioning_a_package_made_by_package_needs_export_on_it(w):
    """A package made by `package` is a copy of a machine's disks: downloading it needs
    `export` on it. Provisioning it makes a machine the provisioner owns (and may package and
    download): with only `read` on the package, that was the same copy by another door."""
    carol = new_user(w.api)
    with w.api.app.state.db.session() as s:
        p = Package(name="review-export", virt_class="test", arch="x86_64", state="cached",
                    owner_uuid=carol.uuid, manifest={"disks": []})
        s.add(p)
        s.flush()
        pkg = p.uuid
    grant(w.api, pkg, "read", user=w.alice.uuid)
    host = w.api.local_host()
    grant(w.api, host, "read", user=w.alice.uuid)
    with unchanged(w.api):
        body = expect_error(w.api.post(f"/rest/machine/{host}/actions/provision/",
                                       auth=w.alice.auth, data={
                                           "pkguuid": pkg, "hvmuuid": w.hv,
                                           "name": w.name()}), 403, 1101)
    assert "export" in body["message"], body
    # with `export` on it the same request goes on (here to the test driver's missing upload)
    grant(w.api, pkg, "export", user=w.alice.uuid)
    r = w.api.post(f"/rest/machine/{host}/actions/provision/", auth=w.alice.auth,
                   data={"pkguuid": pkg, "hvmuuid": w.hv, "name": w.name()})
    assert r.json()["errno"] != 1101, r.text
