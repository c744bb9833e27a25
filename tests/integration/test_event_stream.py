"""GET /rest/events/ on the real libvirtd: a `virsh suspend` made behind the server's back
reaches a client of the stream (issue 17)."""

import pytest

from enomalism.config import Settings
from tests.api.test_event_stream import Listener, Server, about
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.integration.conftest import URI
from tests.integration.test_events import virsh

pytestmark = pytest.mark.integration


def test_a_virsh_suspend_reaches_a_client_of_the_stream(scratch, host, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", hypervisors=[URI],
                        admin_password=ADMIN_PASSWORD, database_url=database_url(
                            tmp_path / "data"), events_heartbeat=1.0, **FAST_HASHES)
    with running_server(settings) as (url, app):
        app.state.registry.wait_idle(60)
        server = Server(url, app)
        hv = next(u for u, uri, _status, _err in app.state.registry.links() if uri == URI)
        vol, name = scratch.volume(), scratch.domain_name()
        uuid = server.ok("PUT", "/rest/machines/", data={
            "xmldesc": scratch.domain_xml(name, vol.path()), "hvmuuid": hv})["machine"]
        scratch.track(uuid)
        server.ok("POST", f"/rest/machine/{uuid}/actions/create/")
        listener = Listener(server, params={"type": "machine"})
        try:
            virsh("suspend", name)
            e = listener.next(about(uuid, "machine.state", state="paused"), timeout=60)
            assert (e["object"]["name"], e["object"]["previous"]) == (name, "running")
            virsh("resume", name)
            e = listener.next(about(uuid, "machine.state", state="running"), timeout=60)
        finally:
            listener.close()
            server.http.close()
