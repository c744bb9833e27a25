"""One real provision through the command line, on the real libvirtd (qemu:///system): a feed
served over HTTP, `feed add`, `machine provision` into a temporary storage pool with the
progress display, then `start`, `poweroff`, `package` and `delete`, checked against libvirt
itself. Everything made is removed afterwards (tests/integration/conftest.py's Scratch: the
domains it named, every volume of its pool, the pool, its directory)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from enomalism.config import Settings
from tests.cli.conftest import invoke, running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    domain_template,
    feed_item,
    have_qemu_img,
    make_qcow2,
    publish,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed for images")]


@pytest.fixture
def scratch() -> Iterator:
    import libvirt

    from tests.integration.conftest import URI, Host, Scratch

    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        pytest.skip(f"{URI} cannot be opened ({e.get_error_message()}); `make test` starts it")
    host = Host(conn)
    s = Scratch(host)
    try:
        yield s
    finally:
        problems = s.cleanup()
        host.close()
        assert not problems, f"clean-up left things behind: {problems}"


@pytest.fixture
def net(scratch) -> Iterator:  # noqa: ANN001
    """A started libvirt network of the test's own for the package's NIC."""
    from tests.integration.test_provision_network import libvirt_network

    with libvirt_network(scratch.host) as made:
        yield made


def test_provision_start_package_delete_on_qemu(scratch, net, tmp_path: Path):
    from tests.integration.conftest import URI

    image = make_qcow2(tmp_path / "tiny.qcow2", 64, data=b"provisioned through the CLI\n" * 100)
    pkg = build_package(tmp_path / "tiny.xvm2", image, name="cli-tiny",
                        virt_class=scratch.host.domain_type(),
                        domain_xml=domain_template(domain_type=scratch.host.domain_type(),
                                                   network=net.name))
    srv = FeedServer()
    settings = Settings(data_dir=tmp_path / "data", hypervisors=[URI],
                        admin_password=ADMIN_PASSWORD, database_url=None, **FAST_HASHES)
    try:
        feed_url = publish(srv, [feed_item(srv, pkg, "/tiny.xvm2")])
        pool = scratch.pool.name()
        name = scratch.domain_name()
        with running_server(settings) as (url, _app):
            env = {"ENOMALISM_URL": url, "ENOMALISM_USER": "admin",
                   "ENOMALISM_PASSWORD": ADMIN_PASSWORD}

            def run(*args: str):  # noqa: ANN202
                return invoke(*args, env=env)

            assert run("feed", "add", feed_url).code == 0
            r = run("machine", "provision", "cli-tiny", name, "--hypervisor", URI, "--pool",
                    pool, "--timeout", "300")
            assert r.code == 0, r.all
            uuid = r.out.split()[-1]
            scratch.track(uuid)
            assert f"provision {name}: done 100%" in r.err
            assert scratch.host.state(uuid) == "shutoff"
            assert any(v.startswith("enomalism-base-") for v in scratch.volume_names())

            assert run("machine", "start", name).code == 0
            assert scratch.host.state(uuid) == "running"
            doc = run("machine", "show", name, "--json").json
            assert doc["machine"]["state"] == "running" and doc["hypervisors"][0][
                "virt_url"] == URI

            r = run("machine", "package", name, "--name", f"{name}-pkg", "--json")
            assert r.code == 0, r.all
            assert r.json["state"] == "done"
            assert scratch.host.state(uuid) == "running"  # paused meanwhile, resumed
            made = run("package", "show", r.json["package"], "--json").json
            assert made["state"] == "cached" and made["disks"][0]["target"] == "vda"

            assert run("machine", "poweroff", name).code == 0
            assert scratch.host.state(uuid) == "shutoff"
            assert run("machine", "delete", name, "--yes").code == 0
            assert scratch.host.domain(uuid) is None
            assert not [v for v in scratch.volume_names() if v.startswith(name)]
    finally:
        srv.close()
