"""VMcast feeds, the package archive and downloads: pure Python, no database, no libvirt.

    archive   the XVM2-compatible package file: write, read and check, stream a disk out
    feed      RSS 2.0 VMcast feeds with our namespace: parse and render
    download  http(s) fetches and resumable, verified downloads; credentials kept out of URLs

docs/packages.md describes the formats. The function `download` is not re-exported here: the
name belongs to the module (`from enomalism.feeds.download import download`).
"""

from enomalism.feeds.archive import (
    DiskInfo,
    DiskReader,
    Manifest,
    file_sha256,
    open_disk,
    read_package,
    verify_package,
    write_package,
    write_package_sha256,
)
from enomalism.feeds.download import (
    DownloadCancelled,
    check_url,
    fetch,
    redact,
    split_credentials,
)
from enomalism.feeds.feed import Feed, FeedItem, parse_feed, render_feed

__all__ = [
    "DiskInfo", "DiskReader", "DownloadCancelled", "Feed", "FeedItem", "Manifest", "check_url",
    "fetch", "file_sha256", "open_disk", "parse_feed", "read_package", "redact", "render_feed",
    "split_credentials", "verify_package", "write_package", "write_package_sha256",
]
