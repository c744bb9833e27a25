"""A second look, as a non-administrator, at what the merged isolation layers (issue 12) and
the audit log (issue 13, item 4) still let through. Each test is one finding: it failed on the
merged branch; the fixed ones pass, the open ones are `xfail(strict=True)` naming the gap."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.api.accounts import Account, grant, new_user
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
