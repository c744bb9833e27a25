"""`GET /readyz`: readiness for load balancers and Kubernetes, without credentials; 200 when the
database, the job runner, the node's heartbeat and claims and every hypervisor link are well,
503 (errno 1550) naming each check that is not. `/healthz` stays the liveness answer."""

from tests.conftest import expect_error

# Nothing listens on port 1; the user name, password and parameters must never be shown.
DOWN = "qemu+tcp://operator:s3cret@127.0.0.1:1/system?keyfile=/etc/secret.key"
DOWN_SHOWN = "qemu+tcp://127.0.0.1:1/system"


def test_ready_when_everything_is_well(api):
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["errno"], body["message"]) == (0, "ready")
    assert set(body["checks"]) == {"database", "jobs", "leases", "hypervisors"}
    assert all(c["ok"] for c in body["checks"].values()), body
    assert body["checks"]["hypervisors"]["connected"] == 1
    assert isinstance(body["warnings"], list)


def test_a_hypervisor_that_is_down_makes_the_node_not_ready(make_api, make_host):
    with make_api(make_host("host1"), DOWN) as api:
        r = api.client.get("/readyz")
        body = expect_error(r, 503, 1550)
        hv = body["checks"]["hypervisors"]
        assert not hv["ok"] and hv["connected"] == 1
        [down] = hv["down"]
        assert down["uri"] == DOWN_SHOWN and down["status"] == "disconnected"
        assert down["error"], down
        assert f"hypervisors: not connected: {DOWN_SHOWN}" in body["message"]
        assert all(body["checks"][c]["ok"] for c in ("database", "jobs", "leases")), body
        # No credentials needed, and none shown.
        assert "s3cret" not in r.text and "operator" not in r.text and "keyfile" not in r.text
        # Liveness is not readiness: the process answers.
        assert api.client.get("/healthz").json() == {"errno": 0, "message": "ok"}


def test_a_stopped_job_runner_makes_the_node_not_ready(api):
    api.client.app.state.runner.stop()
    body = expect_error(api.client.get("/readyz"), 503, 1550)
    jobs = body["checks"]["jobs"]
    assert not jobs["ok"] and "stopping" in jobs["error"]
    assert "jobs:" in body["message"]


def test_a_node_that_no_longer_renews_its_claims_is_not_ready(api):
    """The thread keeping this node's heartbeat and hypervisor claims has stopped (the
    registry stopped): other nodes take its hypervisors over, so it must not take requests."""
    api.client.app.state.registry.stop()
    body = expect_error(api.client.get("/readyz"), 503, 1550)
    leases = body["checks"]["leases"]
    assert not leases["ok"] and "stopped" in leases["error"]


def test_readyz_is_described_in_openapi(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}


def test_a_hypervisor_slow_to_answer_is_a_warning_not_a_failure(make_api, make_host,
                                                                 monkeypatch, caplog):
    """A hypervisor whose capabilities take seconds (libvirt re-probing QEMU on every call) is
    logged at connect and listed in the warnings; the node stays ready. Here every answer
    counts as slow (the threshold lowered to nothing)."""
    from enomalism.runtime import registry

    monkeypatch.setattr(registry, "SLOW_CAPABILITIES", 0.0)
    with make_api(make_host("host1")) as api:
        r = api.client.get("/readyz")
        assert r.status_code == 200, r.text
        [warning] = r.json()["warnings"]
        assert warning.startswith("hypervisor test:///") and "capabilities" in warning
    assert any("to answer for its capabilities" in m for m in caplog.messages)
