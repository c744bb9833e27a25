"""PUT /rest/vmfeed/upload/ (issue 16): a local .xvm2 file, as the body or a multipart part,
becomes a cached package of the uploader's, checked as a feed's package is; a file that is
no package, or is corrupt, is refused and leaves nothing behind."""

from pathlib import Path

import pytest

from tests.api.accounts import new_user
from tests.conftest import expect_error
from tests.integration.provision_helpers import build_package, make_qcow2


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("pkg")
    image = make_qcow2(d / "disk.qcow2", 16, data=bytes(range(256)) * 4096)
    return build_package(d / "p.xvm2", image, name="uploaded")


def cache_files(api) -> list[str]:
    return sorted(p.name for p in Path(api.app.state.runner.packages_dir).glob("*"))


def test_a_package_uploaded_as_the_body_and_as_a_part(api, pkg):
    data = Path(pkg.path).read_bytes()
    body = api.ok("PUT", "/rest/vmfeed/upload/", content=data,
                  headers={"Content-Type": "application/enomalism2-xvm2"})
    p = body["package"]
    assert (p["name"], p["state"], p["size"], p["repository"]) == \
        ("uploaded", "cached", len(data), None)
    assert p["disks"][0]["target"] == "vda" and p["disks"][0]["sha256"]
    assert cache_files(api) == [f"{p['uuid']}.xvm2"]
    assert api.get(f"/rest/vmfeed/{p['uuid']}/download/").content == data
    with open(pkg.path, "rb") as f:
        second = api.ok("PUT", "/rest/vmfeed/upload/", files={"file": ("p.xvm2", f)},
                        data={"name": "renamed"})["package"]
    assert second["name"] == "renamed" and second["uuid"] != p["uuid"]
    listed = {q["uuid"] for q in api.ok("GET", "/rest/vmfeed/")["packages"]}
    assert {p["uuid"], second["uuid"]} <= listed
    other = new_user(api)
    assert p["uuid"] not in {q["uuid"] for q in api.ok("GET", "/rest/vmfeed/",
                                                       auth=other.auth)["packages"]}


@pytest.mark.parametrize("case", ["not_a_package", "corrupt", "short", "nothing"])
def test_bad_packages_are_refused_and_leave_nothing(api, pkg, case):
    data = Path(pkg.path).read_bytes()
    headers = {"Content-Type": "application/octet-stream"}
    if case == "not_a_package":
        r = api.put("/rest/vmfeed/upload/", content=b"hello" * 1000, headers=headers)
        expect_error(r, 400, 1016)
    elif case == "corrupt":
        middle = data.index(b"\x28\xb5\x2f\xfd") + 40  # inside the zstd-compressed disk
        r = api.put("/rest/vmfeed/upload/", headers=headers,
                    content=data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
        expect_error(r, 400, 1016)
    elif case == "short":
        r = api.put("/rest/vmfeed/upload/", content=b"",
                    headers={**headers, "Content-Length": "1000"})
        expect_error(r, 400, 1000)
    else:
        expect_error(api.put("/rest/vmfeed/upload/"), 400, 1001)
    assert cache_files(api) == []
    assert api.ok("GET", "/rest/vmfeed/")["packages"] == []
