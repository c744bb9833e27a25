"""The hypervisor object on libvirt's test:/// driver: what it adds to the driver functions
(error distinctions, wrapped pools), and that its libvirt connection stays inside virt/."""

import re
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from enomalism.errors import HypervisorUnreachable, NotFound
from enomalism.virt.hypervisor import HypervisorConnection, event_state
from enomalism.virt.pool import StoragePool

SRC = Path(__file__).resolve().parents[2] / "src" / "enomalism"


@pytest.fixture
def hv() -> Iterator[HypervisorConnection]:
    conn = HypervisorConnection(libvirt.open("test:///default"))
    yield conn
    conn.close()


def test_has_network_is_false_only_for_a_network_libvirt_does_not_have(hv):
    assert hv.has_network("default") is True
    assert hv.has_network("no-such-network") is False


def test_a_dropped_connection_is_no_answer_about_networks(hv):
    """Taken for "not a libvirt network", provisioning would write a bridge interface."""
    hv.close()
    with pytest.raises(HypervisorUnreachable):
        hv.has_network("default")


def test_a_dhcp_host_entry_is_written_as_xml_with_its_name(hv):
    hv.dhcp_host("default", mac="52:54:00:aa:bb:01", ip="192.168.122.77", name="web-1",
                 command="add")
    root = etree.fromstring(hv.virconnect.networkLookupByName("default").XMLDesc(0))
    host = root.find("ip/dhcp/host[@mac='52:54:00:aa:bb:01']")
    assert (host.get("ip"), host.get("name")) == ("192.168.122.77", "web-1")
    hv.dhcp_host("default", mac="52:54:00:aa:bb:01", ip="192.168.122.77", name="",
                 command="delete")
    root = etree.fromstring(hv.virconnect.networkLookupByName("default").XMLDesc(0))
    assert root.find("ip/dhcp/host[@mac='52:54:00:aa:bb:01']") is None


def test_pools_are_handed_out_wrapped(hv):
    pool = hv.pick_pool()
    assert isinstance(pool, StoragePool)
    assert pool.name() == "default-pool"
    assert pool.volume_path("no-such-volume") is None
    _state, capacity, _allocation, available = pool.info()
    assert capacity >= available > 0
    with pytest.raises(NotFound):
        hv.pool("no-such-pool")


def test_domains_and_volumes_are_listed_as_plain_data(hv):
    names = [name for name, _xml in hv.domain_xmls()]
    assert "test" in names
    assert all(isinstance(v, str) for row in hv.active_pool_volumes() for v in row)


def test_only_an_actions_own_pause_and_resume_events_name_a_state():
    assert event_state(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                       libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED) == "paused"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_RESUMED,
                       libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED) == "running"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                       libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR) is None


def test_no_module_outside_virt_reads_the_libvirt_connection():
    """import-linter holds the imports (make lint); this holds the one attribute that is a
    libvirt object."""
    readers = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if p.parent.name != "virt" and re.search(r"\.virconnect\b", p.read_text())]
    assert readers == []
