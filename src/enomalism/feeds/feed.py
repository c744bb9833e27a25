"""VMcast feeds: RSS 2.0 whose items each carry one package as an `<enclosure>`.

What Enomalism 2 and Archipel wrote is read as is (`<uuid>` in channel and items, no `<guid>`,
free-form `pubDate`). What we add (the package's sha256 and manifest fields) lives in our own
namespace, `https://enomalism.org/ns/vmcast/1`, which plain RSS readers skip. XML is parsed
without DTDs or entity expansion: a feed comes from whoever runs the server at the URL.
"""

import email.utils
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from lxml import etree

from enomalism.errors import InvalidInput

NS = "https://enomalism.org/ns/vmcast/1"
NSMAP = {"eno": NS}
PACKAGE_TYPE = "application/enomalism2-xvm2"
# Enclosure types that carry a package; items with another type (a podcast episode) are skipped.
PACKAGE_TYPES = frozenset({PACKAGE_TYPE, "application/octet-stream", "application/x-tar", ""})

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True,
)


def parse_xml_safely(data: bytes, what: str) -> etree._Element:
    """Parse untrusted XML: no DTD loading, no entities, no network.

    A DOCTYPE that declares anything (where "billion laughs" and external entities live) is
    refused outright; a bare one, like RSS 0.91's public identifier, is never fetched.
    """
    if not data or not data.strip():
        raise InvalidInput(f"{what} is empty")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        if b"<html" in data.lstrip()[:300].lower():
            raise InvalidInput(f"{what} is an HTML page, not XML: check that the URL points at "
                               "the feed itself") from None
        raise InvalidInput(f"{what} is not well-formed XML: {e}") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and (any(True for _ in dtd.iterentities())
                            or any(True for _ in dtd.iterelements())):
        raise InvalidInput(f"{what} declares a DTD with entities or elements; "
                           "such declarations are refused")
    return root


@dataclass
class FeedItem:
    """One package offered by a feed."""

    guid: str  # <guid>, else <uuid>, else the enclosure URL: stable across refreshes
    title: str
    description: str
    url: str  # absolute http(s) URL of the package
    length: int | None  # bytes, from the enclosure; None when the feed says 0 or nothing
    type: str
    sha256: str | None = None  # eno:sha256 of the package file
    version: str | None = None
    virt_class: str | None = None
    arch: str | None = None
    uuid: str | None = None  # <uuid> as Enomalism 2 feeds carry it, canonical form
    name: str | None = None  # eno:name, the manifest's name (the title is for people)
    link: str | None = None
    pub_date: datetime | None = None


@dataclass
class Feed:
    title: str
    link: str
    description: str
    uuid: str | None = None
    items: list[FeedItem] = field(default_factory=list)


def _text(el: etree._Element, tag: str) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def _uuid(value: str | None) -> str | None:
    """A canonical UUID, or None for anything else: `<uuid>` is metadata, not a key we trust."""
    if not value:
        return None
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        return None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        pass
    try:  # what Enomalism 2 wrote: str(datetime.now())
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _item(el: etree._Element, index: int, base_url: str) -> FeedItem | None:
    title = _text(el, "title") or ""
    label = f"item {index} ({title!r})" if title else f"item {index}"
    enc = el.find("enclosure")
    if enc is None:
        return None  # a news item, not a package
    etype = (enc.get("type") or "").strip().lower()
    if etype not in PACKAGE_TYPES:
        return None
    raw_url = (enc.get("url") or "").strip()
    if not raw_url:
        raise InvalidInput(f"feed {label}: the enclosure has no url attribute")
    url = urljoin(base_url, raw_url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"feed {label}: the enclosure URL must be http or https, "
                           f"not {parts.scheme or 'relative'}://")
    length_text = (enc.get("length") or "").strip()
    length = int(length_text) if length_text.isdigit() and int(length_text) > 0 else None
    sha256 = _text(el, f"{{{NS}}}sha256")
    if sha256 is not None:
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput(f"feed {label}: eno:sha256 is not 64 hexadecimal digits")
    item_uuid = _uuid(_text(el, "uuid"))
    return FeedItem(
        guid=_text(el, "guid") or item_uuid or url,
        title=title or _text(el, f"{{{NS}}}name") or url.rsplit("/", 1)[-1],
        description=_text(el, "description") or "",
        url=url,
        length=length,
        type=etype or PACKAGE_TYPE,
        sha256=sha256,
        version=_text(el, f"{{{NS}}}version"),
        virt_class=_text(el, f"{{{NS}}}virtClass"),
        arch=_text(el, f"{{{NS}}}arch"),
        uuid=item_uuid,
        name=_text(el, f"{{{NS}}}name"),
        link=_text(el, "link"),
        pub_date=_date(_text(el, "pubDate")),
    )


def parse_feed(data: bytes, base_url: str) -> Feed:
    """Read a VMcast feed. Relative enclosure URLs are resolved against `base_url`."""
    root = parse_xml_safely(data, "the feed")
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag == "{http://www.w3.org/2005/Atom}feed":
        raise InvalidInput("the feed is Atom; VMcast feeds are RSS 2.0 (<rss version=\"2.0\">)")
    if tag != "rss":
        local = etree.QName(root).localname if tag else "?"
        raise InvalidInput(f"the document is not an RSS feed: its root element is <{local}>, "
                           "not <rss>")
    channel = root.find("channel")
    if channel is None:
        raise InvalidInput("the RSS feed has no <channel> element")
    items = []
    for i, el in enumerate(channel.iterfind("item"), 1):
        item = _item(el, i, base_url)
        if item is not None:
            items.append(item)
    return Feed(
        title=_text(channel, "title") or "",
        link=_text(channel, "link") or "",
        description=_text(channel, "description") or "",
        uuid=_uuid(_text(channel, "uuid")),
        items=items,
    )


# Characters XML 1.0 cannot carry at all; a description typed by a user may hold one.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _sub(parent: etree._Element, tag: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(parent, tag).text = _NOT_XML.sub("", text)


def render_feed(feed: Feed) -> bytes:
    """An RSS 2.0 document that `parse_feed`, Enomalism 2, Archipel and feed readers all read."""
    rss = etree.Element("rss", version="2.0", nsmap=NSMAP)
    channel = etree.SubElement(rss, "channel")
    _sub(channel, "title", feed.title)
    _sub(channel, "link", feed.link)
    _sub(channel, "description", feed.description)
    _sub(channel, "uuid", feed.uuid)  # not RSS, but what Enomalism 2 readers look for
    _sub(channel, "generator", "enomalism")
    _sub(channel, "lastBuildDate", email.utils.format_datetime(datetime.now(UTC), usegmt=True))
    for it in feed.items:
        item = etree.SubElement(channel, "item")
        _sub(item, "title", it.title)
        _sub(item, "link", it.link)
        _sub(item, "description", it.description)
        etree.SubElement(item, "guid", isPermaLink="false").text = _NOT_XML.sub("", it.guid)
        _sub(item, "uuid", it.uuid)
        etree.SubElement(item, "enclosure", url=it.url, length=str(it.length or 0),
                         type=it.type or PACKAGE_TYPE)
        if it.pub_date is not None:
            when = it.pub_date if it.pub_date.tzinfo else it.pub_date.replace(tzinfo=UTC)
            _sub(item, "pubDate", email.utils.format_datetime(when.astimezone(UTC), usegmt=True))
        _sub(item, f"{{{NS}}}sha256", it.sha256)
        _sub(item, f"{{{NS}}}name", it.name)
        _sub(item, f"{{{NS}}}version", it.version)
        _sub(item, f"{{{NS}}}virtClass", it.virt_class)
        _sub(item, f"{{{NS}}}arch", it.arch)
    return etree.tostring(rss, xml_declaration=True, encoding="utf-8", pretty_print=True)
