"""`enomalism image upload|list|show|delete` and `enomalism package upload` against a real
server (uvicorn: the file crosses real HTTP, streamed) on the real libvirtd, into a scratch
pool of the test's own."""

import hashlib
import json
from pathlib import Path

import pytest

from enomalism.config import Settings
from tests.cli.conftest import invoke, running_server
from tests.cli.test_integration import scratch  # noqa: F401  (the fixture)
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES
from tests.integration.provision_helpers import build_package, make_qcow2

pytestmark = pytest.mark.integration


def test_image_and_package_upload_through_the_cli(scratch, tmp_path: Path):  # noqa: F811
    from tests.integration.conftest import URI

    image = make_qcow2(tmp_path / "cirros.qcow2", 64, data=bytes(range(256)) * 8192)
    pkg = build_package(tmp_path / "p.xvm2", image, name="cli-upload")
    settings = Settings(data_dir=tmp_path / "data", hypervisors=[URI],
                        admin_password=ADMIN_PASSWORD, database_url=None, **FAST_HASHES)
    with running_server(settings) as (url, _app):
        env = {"ENOMALISM_URL": url, "ENOMALISM_USER": "admin",
               "ENOMALISM_PASSWORD": ADMIN_PASSWORD}

        def run(*args: str):  # noqa: ANN202
            return invoke(*args, env=env)

        # no --hypervisor: the connected one on this machine (the server's only one)
        r = run("image", "upload", str(image), "--pool", scratch.pool.name(), "--json")
        assert r.code == 0, r.all
        doc = json.loads(r.out)
        assert (doc["name"], doc["format"], doc["state"]) == ("cirros", "qcow2", "ready")
        assert doc["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert Path(doc["path"]).read_bytes() == image.read_bytes()
        r = run("image", "list")
        assert r.code == 0 and "cirros" in r.out and "ready" in r.out
        r = run("image", "show", "cirros")
        assert r.code == 0 and doc["uuid"] in r.out and "64.0 MiB" in r.out, r.all
        r = run("image", "upload", str(image), "--pool",
                scratch.pool.name(), "--format", "raw", "--name", "liar")
        assert r.code != 0 and "not raw" in r.all
        r = run("package", "import", "cirros", "--name", "cirros-pkg", "--json")
        assert r.code == 0, r.all
        made = json.loads(r.out)
        assert made["transaction"]["state"] == "done" and made["package"]
        assert "cirros-pkg" in run("package", "show", made["package"]).out
        r = run("image", "delete", "cirros", "--yes")
        assert r.code == 0, r.all
        assert not Path(doc["path"]).exists()
        assert scratch.volume_names() == []

        r = run("package", "upload", str(pkg.path), "--json")
        assert r.code == 0, r.all
        p = json.loads(r.out)
        assert (p["name"], p["state"], p["sha256"]) == ("cli-upload", "cached", pkg.sha256)
        assert "cli-upload" in run("package", "list").out
