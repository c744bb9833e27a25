"""VMcast feeds: what Enomalism 2 and Archipel wrote, our own round trip, and bad feeds."""

from datetime import UTC, datetime

import pytest

from enomalism.errors import InvalidInput
from enomalism.feeds.feed import NS, Feed, FeedItem, parse_feed, render_feed

BASE = "http://repo.example.org/vmcast/feed.xml"

# As Enomalism 2 / Archipel wrote them: <uuid> instead of <guid>, CDATA descriptions,
# str(datetime.now()) as pubDate, single-quoted attributes.
OLD_FEED = b"""<?xml version='1.0' encoding='utf-8'?>
   <rss version='2.0'>
   <channel>
        <title>My VMCast</title>
        <link>http://repo.example.org</link>
        <uuid>EC53DB38-A692-4F04-BAC9-50FF9F590001</uuid>
        <description>Appliances</description>
        <language>en-us</language>
        <item>
            <title>Wordpress template</title>
            <link>http://repo.example.org</link>
            <uuid>ae201436-8b36-11dd-bbb3-269650d01a85</uuid>
            <enclosure url='http://repo.example.org/wordpress.xvm2' length='266741760'
                       type='application/enomalism2-xvm2'/>
            <description>
            <![CDATA[
                Debian with <b>Wordpress</b>
            ]]>
            </description>
            <pubDate>2011-09-23 12:00:00.123456</pubDate>
        </item>
        <item>
            <title>News: the repository moved</title>
            <description>no enclosure: not a package</description>
        </item>
        <item>
            <title>A podcast episode</title>
            <enclosure url='http://repo.example.org/ep1.mp3' length='100' type='audio/mpeg'/>
        </item>
        <item>
            <title>Relative</title>
            <enclosure url='packages/small.xvm2' length='0' type='application/octet-stream'/>
            <pubDate>Tue, 23 Sep 2011 12:00:00 -0800</pubDate>
        </item>
    </channel>
</rss>"""


def test_old_feed():
    feed = parse_feed(OLD_FEED, BASE)
    assert (feed.title, feed.link, feed.description) == ("My VMCast", "http://repo.example.org",
                                                        "Appliances")
    assert feed.uuid == "ec53db38-a692-4f04-bac9-50ff9f590001"
    assert [i.title for i in feed.items] == ["Wordpress template", "Relative"]
    wp, rel = feed.items
    assert wp.url == "http://repo.example.org/wordpress.xvm2"
    assert (wp.length, wp.type, wp.sha256) == (266741760, "application/enomalism2-xvm2", None)
    assert wp.uuid == wp.guid == "ae201436-8b36-11dd-bbb3-269650d01a85"
    assert wp.description == "Debian with <b>Wordpress</b>"
    assert wp.pub_date == datetime(2011, 9, 23, 12, 0, 0, 123456)
    assert rel.url == "http://repo.example.org/vmcast/packages/small.xvm2"
    assert rel.length is None and rel.uuid is None and rel.guid == rel.url
    assert rel.pub_date.utcoffset().total_seconds() == -8 * 3600


def item(**kw) -> FeedItem:
    base = dict(guid="pkg-1", title="Web server", description="nginx & <php>", url=
                "http://a.example/rest/vmfeed/0f7c/download/", length=12345,
                type="application/enomalism2-xvm2", sha256="ab" * 32, version="1.2",
                virt_class="kvm", arch="x86_64", uuid="0f7c1bd2-67b4-4c58-8a6e-6f1f8a2ad7a1",
                name="web", link="http://a.example/", pub_date=datetime(2024, 5, 1, tzinfo=UTC))
    base.update(kw)
    return FeedItem(**base)


def test_round_trip():
    feed = Feed(title="Local packages", link="http://a.example/", description="ours",
                uuid="6a3f1b8e-0a53-4d1b-9d86-9a2c1f2b7e10",
                items=[item(), item(guid="pkg-2", uuid=None, sha256=None, version=None,
                                virt_class=None, arch=None, name=None, link=None, pub_date=None,
                                length=None)])
    data = render_feed(feed)
    assert data.startswith(b"<?xml")
    assert NS.encode() in data
    assert parse_feed(data, "http://elsewhere.example/") == feed


def test_rendered_feed_reads_in_a_plain_rss_reader():
    feedparser = pytest.importorskip("feedparser")
    parsed = feedparser.parse(render_feed(Feed("Local", "http://a.example/", "ours", None,
                                               [item()])))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    entry = parsed.entries[0]
    assert entry.title == "Web server"
    assert entry.enclosures[0].href == "http://a.example/rest/vmfeed/0f7c/download/"
    assert entry.enclosures[0].length == "12345"
    assert entry.enclosures[0].type == "application/enomalism2-xvm2"
    assert entry.id == "pkg-1"


def test_namespace_prefix_does_not_matter():
    doc = f"""<rss version="2.0" xmlns:x="{NS}"><channel><title>t</title><item>
        <enclosure url="http://h/p.xvm2" length="5" type="application/enomalism2-xvm2"/>
        <x:sha256>{"CD" * 32}</x:sha256><x:virtClass>qemu</x:virtClass>
        </item></channel></rss>""".encode()
    (it,) = parse_feed(doc, BASE).items
    assert (it.sha256, it.virt_class) == ("cd" * 32, "qemu")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"this is plain text", "not well-formed XML"),
    (b"<rss><channel>", "not well-formed XML"),
    (b"<!DOCTYPE html><html><head><title>Login</title></head><body><br></body></html>",
     "HTML page"),
    (b"<html><body><p>Moved<br></body></html>", "HTML page"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'><title>x</title></feed>", "Atom"),
    (b"<domain type='kvm'/>", "root element is <domain>"),
    (b"<rss version='2.0'><title>x</title></rss>", "no <channel>"),
])
def test_not_a_feed(data, message):
    with pytest.raises(InvalidInput, match=message):
        parse_feed(data, BASE)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title></channel></rss>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>&secret;</title></channel></rss>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entities_are_refused(data):
    with pytest.raises(InvalidInput, match="DTD|entit"):
        parse_feed(data, BASE)


def test_bare_rss091_doctype_is_harmless():
    data = (b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS '
            b'0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">'
            b"<rss version='0.91'><channel><title>old</title></channel></rss>")
    assert parse_feed(data, BASE).title == "old"


def one_item(enclosure: str, extra: str = "") -> bytes:
    return (f"<rss version='2.0' xmlns:eno='{NS}'><channel><title>t</title>"
            f"<item><title>pkg</title>{enclosure}{extra}</item></channel></rss>").encode()


@pytest.mark.parametrize("enclosure, extra, message", [
    ("<enclosure length='5' type='application/enomalism2-xvm2'/>", "", "has no url"),
    ("<enclosure url='ftp://h/p.xvm2' type='application/enomalism2-xvm2'/>", "",
     "must be http or https, not ftp"),
    ("<enclosure url='file:///etc/passwd'/>", "", "not file"),
    ("<enclosure url='http://h/p.xvm2'/>", "<eno:sha256>xyz</eno:sha256>", "64 hexadecimal"),
])
def test_bad_items(enclosure, extra, message):
    with pytest.raises(InvalidInput, match=f"item 1 .'pkg'.: .*{message}"):
        parse_feed(one_item(enclosure, extra), BASE)


def test_lenient_metadata():
    """Malformed optional metadata is dropped, not fatal: length, uuid and dates."""
    data = one_item("<enclosure url='http://h/p.xvm2' length='big'/>",
                    "<uuid>not-a-uuid</uuid><pubDate>someday</pubDate>")
    (it,) = parse_feed(data, BASE).items
    assert (it.length, it.uuid, it.pub_date, it.guid) == (None, None, None, "http://h/p.xvm2")


def test_text_xml_cannot_carry_is_dropped_when_rendering():
    feed = Feed("t\x00", "http://a.example/", "bell\x07 and tab\t", None,
                [item(description="form\x0cfeed", title="ok \ud800")])
    back = parse_feed(render_feed(feed), BASE)
    assert (back.title, back.description) == ("t", "bell and tab")
    assert (back.items[0].description, back.items[0].title) == ("formfeed", "ok")
