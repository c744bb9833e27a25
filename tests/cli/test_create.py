"""`enomalism machine create` (issue 16) against the CLI tests' server on the test driver:
the flags reach the API, the machine is created on the named hypervisor, --ssh-key reads a
file of keys, and bad input comes back as the API's error with its errno."""

import pytest

from enomalism.store.models import Machine
from tests.cli.conftest import Cloud

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmqk0F1mM5NUKv8X4wt2lkVnvNUCGTKCk2hKUeNWlqM "
       "alice@laptop")


def test_create_a_machine_with_a_blank_disk(cloud: Cloud, own):
    name = own("vm")
    r = cloud.run("--json", "machine", "create", name, "--vcpus", "2", "--memory", "256",
                  "--disk", "1", "--hypervisor", cloud.h2, "--autostart")
    assert r.code == 0, r.all
    doc = r.json
    assert doc["state"] == "done" and doc["hypervisor"] == cloud.h2
    m = cloud.machine(doc["machine"])
    assert (m["name"], m["vcpus"], m["memory_kib"], m["state"]) == (name, 2, 262144, "shutoff")
    assert "<source file='/default-pool/" in m["xmldesc"]
    cloud.ok("POST", f"/rest/machine/{doc['machine']}/actions/totaldelete/")


def test_bad_input_is_the_apis_error(cloud: Cloud, own, tmp_path):
    keys = tmp_path / "keys.pub"
    keys.write_text(f"# mine\n{KEY}\nssh-rsa broken\n")
    name = own("vm")
    r = cloud.run("machine", "create", name, "--disk", "1", "--hypervisor", cloud.h1,
                  "--ssh-key", str(keys))
    assert r.code != 0
    assert "ssh-rsa" in r.err and "1027" in r.err, r.all
    big = tmp_path / "user-data"
    big.write_text("#cloud-config\n" + "x" * 70000)
    r = cloud.run("--json", "machine", "create", name, "--disk", "1", "--hypervisor", cloud.h1,
                  "--user-data", str(big))
    assert r.code != 0 and "65536 bytes" in r.all and "1041" in r.all, r.all
    r = cloud.run("machine", "create", name, "--image", "nothing-like-it", "--hypervisor",
                  cloud.h1)
    assert r.code != 0 and "nothing-like-it" in r.all
    with cloud.app.state.db.session(write=False) as s:
        assert not s.query(Machine).filter_by(name=name).count()


@pytest.mark.parametrize("args", [
    ("machine", "create", "a/b", "--disk", "1"),
    ("machine", "create", ".hidden", "--disk", "1"),
    ("host", "add", "a/b"),
    ("cluster", "create", "x" * 256),
    ("group", "create", "bad name"),
])
def test_a_bad_name_is_the_apis_error(cloud: Cloud, args):
    """The CLI sends names as they are: the server's one rule (services/names.py) answers."""
    r = cloud.run("--json", *args)
    assert r.code != 0 and "1000" in r.all and "is not a usable name" in r.all, r.all
