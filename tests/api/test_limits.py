"""What one request may cost (issue 12, class 9): a body over the size limit, a variable over
the length limit, JSON nested too deep and text that is not UTF-8 are each refused with a 4xx
and an errno, and change nothing (docs/access.md, "Limits on what a request may cost")."""

import json

import pytest

from tests.conftest import expect_error, unchanged, vm_uuid

MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(shared_api):  # noqa: ANN001, ANN201
    return shared_api.ok("PUT", "/rest/cluster/", data={"cluster_name": "limits"})["cluster"]


def rename(api, uuid: str, **kw):  # noqa: ANN001, ANN201
    return api.post(f"/rest/cluster/{uuid}/", **kw)


def test_a_body_over_the_limit_is_413(shared_api, cluster):
    api = shared_api
    with unchanged(api):
        body = expect_error(rename(api, cluster["uuid"], data={
            "action": "rename", "cluster_name": "x" * (MIB + 1)}), 413, 1040)
    assert "ENOMALISM_MAX_BODY_BYTES" in body["message"]


def test_a_chunked_body_is_stopped_at_the_limit(shared_api, cluster):
    def chunks():  # no Content-Length: the server counts what it reads
        yield b"action=rename&cluster_name="
        for _ in range(20):
            yield b"y" * (64 << 10)
    api = shared_api
    with unchanged(api):
        expect_error(rename(api, cluster["uuid"], content=chunks(), headers={
            "Content-Type": "application/x-www-form-urlencoded"}), 413, 1040)


@pytest.mark.parametrize("how", ["urlencoded", "multipart", "json"])
def test_a_variable_over_the_length_limit_is_refused(shared_api, cluster, how):
    """(A query string that long is over the HTTP server's limit on a request line.)"""
    api = shared_api
    variables = {"action": "rename", "cluster_name": "z" * ((64 << 10) + 1)}
    kw = {"urlencoded": {"data": variables},
          "multipart": {"data": variables, "files": {"f": ("f", b"")}},
          "json": {"json": variables}}[how]
    with unchanged(api):
        body = expect_error(rename(api, cluster["uuid"], **kw), 413, 1041)
    assert "cluster_name" in body["message"]


def test_a_document_variable_may_be_longer_than_a_field(shared_api):
    """`xmldesc` is bounded by the body only: a long one reaches the XML check."""
    xml = "<domain type='test'><name>long</name>" + "<!--" + "c" * (200 << 10) + "-->"
    r = shared_api.put("/rest/machines/", data={"xmldesc": xml})
    assert r.status_code == 400 and r.json()["errno"] not in (1040, 1041), r.text


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deep_json_is_400(shared_api, cluster, depth):
    api = shared_api
    content = '{"action": "rename", "cluster_name": "deep", "x": ' + "[" * depth + \
        "]" * depth + "}"
    with unchanged(api):
        body = expect_error(rename(api, cluster["uuid"], content=content, headers={
            "Content-Type": "application/json"}), 400, 1042)
    assert "32 levels" in body["message"]


def test_json_within_the_depth_limit_is_read(shared_api, cluster):
    api = shared_api
    nested = json.loads("[" * 30 + "]" * 30)
    api.ok("POST", f"/rest/cluster/{cluster['uuid']}/",
           json={"action": "rename", "cluster_name": "limits", "x": nested})


FORM = "application/x-www-form-urlencoded"
BOUNDARY = "b0undary"
NOT_UTF8 = {
    "query, percent-encoded": ({"url": "?action=rename&cluster_name=bad%FFname"}),
    "query, an escaped name": ({"url": "?action=rename&cluster_%FF=x"}),
    "form, percent-encoded": ({"content": b"action=rename&cluster_name=bad%FFname",
                               "ctype": FORM}),
    "form, raw bytes": ({"content": b"action=rename&cluster_name=bad\xe9name", "ctype": FORM}),
    "multipart": ({"content": (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nrename\r\n"
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"cluster_name\"\r\n\r\n"
    ).encode() + b"bad\xe9name" + f"\r\n--{BOUNDARY}--\r\n".encode(),
        "ctype": f"multipart/form-data; boundary={BOUNDARY}"}),
    "json": ({"content": b'{"action": "rename", "cluster_name": "bad\xe9name"}',
              "ctype": "application/json"}),
}


@pytest.mark.parametrize("case", NOT_UTF8)
def test_text_that_is_not_utf8_is_400_and_renames_nothing(shared_api, cluster, case):
    api = shared_api
    spec = NOT_UTF8[case]
    kw = {"content": spec["content"], "headers": {"Content-Type": spec["ctype"]}} \
        if "content" in spec else {}
    with unchanged(api):
        body = expect_error(api.post(f"/rest/cluster/{cluster['uuid']}/{spec.get('url', '')}",
                                     **kw), 400, 1043)
    assert "UTF-8" in body["message"]


def test_a_binary_file_part_is_not_text(shared_api, cluster):
    """Only the parts that are not files must be UTF-8."""
    shared_api.ok("POST", f"/rest/cluster/{cluster['uuid']}/",
                  data={"action": "rename", "cluster_name": "limits é"},
                  files={"image": ("disk.img", b"\xff\xfe\x00binary")})
    shared_api.ok("POST", f"/rest/cluster/{cluster['uuid']}/",
                  data={"action": "rename", "cluster_name": "limits"})


@pytest.mark.parametrize("case", NOT_UTF8)
def test_a_machine_is_not_renamed_to_text_that_is_not_utf8(shared_api, case):
    """The issue's own case: a rename of a machine with a name that is not UTF-8."""
    api = shared_api
    spec = NOT_UTF8[case]
    kw = {"content": spec["content"].replace(b"cluster_name", b"name"),
          "headers": {"Content-Type": spec["ctype"]}} if "content" in spec else {}
    url = spec.get("url", "").replace("cluster_", "")
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{vm_uuid(api, 'idle')}/{url}", **kw), 400, 1043)
