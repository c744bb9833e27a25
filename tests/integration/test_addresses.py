"""Where is my VM? The tiny real guest (tests/guest) on a libvirt network with DHCP: the
machine's own GET reports the address leased from the static network (`lease`) and the same
address from libvirt's DHCP leases (`dhcp`), each saying where it came from; the machine list
reports the lease alone (it never asks libvirt)."""

import pytest

from tests.integration.conftest import unique, wait_for
from tests.integration.test_guest_network import (  # noqa: F401  (fixtures)
    gsetup,
    guest_feed,
    guest_ip,
    provision_and_boot,
    transient_net,
)

pytestmark = [pytest.mark.integration, pytest.mark.guest]


def test_the_address_is_reported_from_our_lease_and_libvirts_dhcp(
        gsetup, transient_net, tmp_path):  # noqa: F811
    setup, vnet = gsetup, transient_net
    tmp_path.chmod(0o755)
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 30, 39)
    uuid, _, lease, con = provision_and_boot(setup, net, tmp_path)
    assert guest_ip(con) == lease["address"]
    found = wait_for(lambda: setup.api.machine(uuid)["machine_obj"]["addresses"],
                     lambda a: {x["source"] for x in a} >= {"lease", "dhcp"},
                     "the lease and libvirt's DHCP lease")
    by_source = {x["source"]: x for x in found}
    assert by_source["lease"] == {"address": lease["address"], "prefix": 24,
                                  "mac": lease["mac"], "source": "lease"}
    assert by_source["dhcp"] == {"address": lease["address"], "prefix": 24,
                                 "mac": lease["mac"], "source": "dhcp"}
    listed = setup.api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    assert [x["source"] for x in next(o for o in listed if o["uuid"] == uuid)["addresses"]] \
        == ["lease"]
    setup.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
