"""The server's files are readable by its own user only, whatever the umask (issue 12, class
10): the data dir 0700; the SQLite database, its -wal and -shm, the node id and packages 0600;
files left permissive by an older version are tightened at start (docs/deployment.md)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ADMIN_PASSWORD, FAST_HASHES

# Run in a process of its own: the umask is the process's, and 0 lets everything through.
SERVER = """
import json, os, sys
from pathlib import Path
os.umask(0)
from fastapi.testclient import TestClient
from enomalism.api.app import create_app
from enomalism.config import Settings
from enomalism.feeds.download import PartFile

data, password, hashes = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
settings = Settings(data_dir=data, hypervisors=["test:///default"], admin_password=password,
                    database_url=None, **hashes)
with TestClient(create_app(settings)) as c:
    r = c.put("/rest/cluster/", data={"cluster_name": "modes"}, auth=("admin", password))
    assert r.status_code == 200, r.text
    with PartFile(data / "packages" / "new.xvm2.part", "busy") as part:
        part.keep = True
    modes = {str(p.relative_to(data)): oct(p.stat().st_mode & 0o777)
             for p in [data, *data.rglob("*")]}
print(json.dumps(modes))
"""


def modes_after_start(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ENOMALISM_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", SERVER, str(data), ADMIN_PASSWORD,
                           json.dumps(FAST_HASHES)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_new_data_dir_is_private_under_umask_0(tmp_path):
    modes = modes_after_start(tmp_path / "data")
    assert modes["."] == "0o700"
    for name in ("enomalism.db", "enomalism.db-wal", "enomalism.db-shm", "node-id",
                 "packages/new.xvm2.part"):
        assert modes[name] == "0o600", (name, modes)
    assert modes["packages"] == "0o700"
    assert all(m in ("0o600", "0o700") for m in modes.values()), modes


def test_existing_files_are_tightened_at_start(tmp_path):
    data = tmp_path / "data"
    old = os.umask(0)
    try:
        (data / "packages" / "sub").mkdir(parents=True, mode=0o777)
        for name in ("packages/old.xvm2", "packages/sub/x", "stray-secret"):
            (data / name).write_text("x")
            os.chmod(data / name, 0o666)
        os.chmod(data, 0o777)
        os.chmod(data / "packages", 0o777)
        (tmp_path / "elsewhere").write_text("not ours")
        os.chmod(tmp_path / "elsewhere", 0o644)
        os.symlink(tmp_path / "elsewhere", data / "packages" / "link")
    finally:
        os.umask(old)
    modes = modes_after_start(data)
    for name in ("packages/old.xvm2", "packages/sub/x", "stray-secret", "enomalism.db"):
        assert modes[name] == "0o600", (name, modes)
    for name in (".", "packages", "packages/sub"):
        assert modes[name] == "0o700", (name, modes)
    # a link is not followed out of the tree
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o644
