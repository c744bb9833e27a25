"""Domain XML read and patched as a tree (lxml), never as strings.

The parser refuses DTDs, entities and network access, so XML from clients is safe to read.
"""

from dataclasses import dataclass

from lxml import etree

from enomalism.errors import InvalidXML

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, dtd_validation=False, load_dtd=False,
    remove_blank_text=False, huge_tree=False,
)


@dataclass(frozen=True)
class Disk:
    path: str
    device: str  # disk, cdrom, floppy, lun
    target: str | None
    readonly: bool
    shareable: bool


class DomainXML:
    """A parsed `<domain>` definition."""

    def __init__(self, text: str) -> None:
        if not text or not text.strip():
            raise InvalidXML("xmldesc is empty")
        try:
            root = etree.fromstring(text.encode(), _PARSER)
        except etree.XMLSyntaxError as e:
            raise InvalidXML(f"xmldesc is not well-formed XML: {e}") from None
        if root.getroottree().docinfo.doctype:
            raise InvalidXML("xmldesc must not carry a DOCTYPE")
        if root.tag != "domain":
            raise InvalidXML(f"xmldesc must have a <domain> root element, not <{root.tag}>")
        self.root = root

    def _text(self, path: str) -> str | None:
        el = self.root.find(path)
        return el.text.strip() if el is not None and el.text and el.text.strip() else None

    @property
    def name(self) -> str | None:
        return self._text("name")

    @name.setter
    def name(self, value: str) -> None:
        self._set("name", value)

    @property
    def uuid(self) -> str | None:
        return self._text("uuid")

    @uuid.setter
    def uuid(self, value: str) -> None:
        self._set("uuid", value)

    @property
    def domain_type(self) -> str | None:
        return self.root.get("type")

    def _set(self, tag: str, value: str) -> None:
        el = self.root.find(tag)
        if el is None:
            el = etree.SubElement(self.root, tag)
        el.text = value

    def disks(self) -> list[Disk]:
        """File and block disks with a source; network disks are not ours to manage."""
        out = []
        for d in self.root.iterfind("devices/disk"):
            src = d.find("source")
            if src is None:
                continue
            path = src.get("file") or src.get("dev")
            if not path:
                continue
            target = d.find("target")
            out.append(Disk(
                path=path,
                device=d.get("device", "disk"),
                target=target.get("dev") if target is not None else None,
                readonly=d.find("readonly") is not None,
                shareable=d.find("shareable") is not None,
            ))
        return out

    def to_string(self) -> str:
        return etree.tostring(self.root, encoding="unicode")
