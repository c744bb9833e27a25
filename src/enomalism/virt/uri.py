"""Libvirt connection URIs: which class of hypervisor they name and whether they are local."""

from urllib.parse import urlsplit

from enomalism.errors import InvalidInput

# virt_class -> the URI driver names that serve it.
CLASSES = {
    "kvm": {"qemu"},
    "qemu": {"qemu"},
    "xen": {"xen"},
    "lxc": {"lxc"},
    "test": {"test"},
}


def driver_of(uri: str) -> str:
    """`qemu+ssh://h/system` -> `qemu`."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed [ in the host part
        parts = None
    if parts is None or not parts.scheme or "://" not in uri:
        raise InvalidInput(f"'{uri}' is not a libvirt URI (for example qemu:///system)")
    return parts.scheme.split("+", 1)[0].lower()


def class_of(uri: str) -> str:
    """The virt_class a URI implies when none is given."""
    driver = driver_of(uri)
    if driver not in {d for ds in CLASSES.values() for d in ds}:
        known = ", ".join(sorted(CLASSES))
        raise InvalidInput(f"'{uri}' names the libvirt driver '{driver}'; supported: {known}")
    return driver


def check_class(virt_class: str, uri: str) -> None:
    if virt_class not in CLASSES:
        raise InvalidInput(
            f"unknown virt_class '{virt_class}'; use one of {', '.join(sorted(CLASSES))}"
        )
    if driver_of(uri) not in CLASSES[virt_class]:
        raise InvalidInput(f"virt_class '{virt_class}' does not match the URI '{uri}'")


def is_local(uri: str) -> bool:
    """True when the URI reaches this machine (no host part, no remote transport)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2].lower()
    return not parts.hostname and transport in ("", "unix")


def redact(uri: str) -> str:
    """The URI without user name, password or parameters (`qemu+ssh://root@h/system?keyfile=k`
    -> `qemu+ssh://h/system`): for answers given without credentials, such as /readyz."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "(not a URI)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
