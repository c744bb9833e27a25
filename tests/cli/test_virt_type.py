"""--virt-type (kvm or plain QEMU/TCG, issue 16 item 7) and --libvirt-network on `enomalism
machine provision` and `machine create`, against the CLI tests' server on the test driver:
the flags reach the API (the queued transaction carries them), and bad values come back as
the API's error with its errno, leaving no machine."""

from enomalism.store.models import Machine, Transaction
from tests.cli.conftest import Cloud


def _params(cloud: Cloud, txid: str) -> dict:
    with cloud.app.state.db.session(write=False) as s:
        return dict(s.get(Transaction, txid).params)


def _absent(cloud: Cloud, name: str) -> bool:
    with cloud.app.state.db.session(write=False) as s:
        return not s.query(Machine).filter_by(name=name).count()


def test_provision_takes_the_virt_type(cloud: Cloud, feed, own):
    name = own("tcg")
    doc = cloud.run("--json", "machine", "provision", "tiny-cli", name, "--hypervisor",
                    cloud.h1, "--virt-type", "qemu").json
    assert doc["state"] == "done", doc
    assert _params(cloud, doc["txid"])["virt_type"] == "qemu"
    cloud.ok("POST", f"/rest/machine/{doc['machine']}/actions/totaldelete/")


def test_provision_refuses_a_bad_virt_type_or_network(cloud: Cloud, feed, own):
    name = own("bad")
    r = cloud.run("--json", "machine", "provision", "tiny-cli", name, "--hypervisor", cloud.h1,
                  "--virt-type", "xen")
    assert r.code == 1 and r.json["errno"] == 1000 and "kvm or qemu" in r.json["message"]
    r = cloud.run("--json", "machine", "provision", "tiny-cli", name, "--hypervisor", cloud.h1,
                  "--libvirt-network", "no-such-net")
    assert r.code == 3 and "no libvirt network 'no-such-net'" in r.json["message"], r.all
    assert _absent(cloud, name)


def test_create_takes_the_virt_type(cloud: Cloud, own):
    name = own("tcg")
    doc = cloud.run("--json", "machine", "create", name, "--disk", "1", "--hypervisor",
                    cloud.h2, "--virt-type", "qemu", "--no-wait").json
    assert _params(cloud, doc["txid"])["domain_type"] in ("qemu", "test")  # test: test driver
    assert cloud.run("tx", "wait", doc["txid"]).code == 0
    cloud.ok("POST", f"/rest/machine/{doc['machine']}/actions/totaldelete/")
    name = own("bad")
    r = cloud.run("--json", "machine", "create", name, "--disk", "1", "--hypervisor", cloud.h2,
                  "--virt-type", "xen")
    assert r.code == 1 and r.json["errno"] == 1000 and "virt_type" in r.json["message"], r.all
    assert _absent(cloud, name)
