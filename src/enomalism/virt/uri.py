"""Libvirt connection URIs: which class of hypervisor they name, whether they are local, and
which ones a non-administrator may give."""

import ipaddress
import re
from urllib.parse import urlsplit

from enomalism.errors import ForbiddenURI, InvalidInput

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


# -- what a non-administrator may name ----------------------------------------------------------
#
# Administrators are trusted with the host and may name any URI libvirt takes. Anyone else gets
# an allow-list, because libvirt acts on a URI with the server's own powers: the `ext`
# transport and `command=`/`netcat=`/`proxy=` run programs; `socket=`, `keyfile=`,
# `known_hosts=`, `pkipath=` name files and sockets on the server; `name=` makes the far side
# open another URI; `test:///<path>` reads any file and quotes it in its parse error;
# `qemu:///session` and `qemu:///embed?root=` start daemons or write under a path. The grammar
# below is strict on purpose (no percent-escapes, no `;`, which libvirt also takes between
# parameters), so that what is checked here is what libvirt's own parser sees.

USER_DRIVERS = {"qemu": {"/system"}, "xen": {"/", "/system"}, "lxc": {"/", "/system"}}
USER_TRANSPORTS = ("", "unix", "tcp", "tls", "ssh", "libssh", "libssh2")
# Remote-driver parameters that name no program, file or socket, and open no other URI.
USER_PARAMETERS = ("mode", "no_tty", "sshauth", "tls_priority")
_USER_URI = re.compile(r"""
    (?P<driver>[a-z0-9]+) (?:\+(?P<transport>[a-z0-9]+))? ://
    (?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?          # never an ssh option (-o...)
    (?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])?
    (?::(?P<port>[0-9]{1,5}))?
    (?P<path>/[A-Za-z0-9_/-]*)
    (?:\?(?P<query>[A-Za-z0-9_.,:=&+/~@-]*))?
    \Z""", re.X)
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_user_uri(uri: str, *, host_address: str | None, host_is_local: bool) -> None:
    """Refuse (ForbiddenURI, naming what) a URI a non-administrator may not give: only the
    drivers, transports, paths and parameters above, and only towards the host the hypervisor
    is added to (its `address`; this machine itself for the local host)."""
    example = "qemu+ssh://HOST/system, qemu+tls://HOST/system or, on this server's host, " \
              "qemu:///system"
    m = _USER_URI.match(uri)
    if m is None:
        raise ForbiddenURI(f"only an administrator may use the URI '{uri}': other users give "
                           f"a plain URI such as {example}, without escapes")
    driver, transport = m["driver"], m["transport"] or ""
    if driver == "test":
        raise ForbiddenURI("only an administrator may use test: URIs (they read files on the "
                           "server)")
    if driver not in USER_DRIVERS:
        raise ForbiddenURI(f"only an administrator may use the libvirt driver '{driver}'; "
                           f"other users: {', '.join(USER_DRIVERS)}")
    if transport not in USER_TRANSPORTS:
        raise ForbiddenURI(f"only an administrator may use the '{transport}' transport; other "
                           f"users: {', '.join(t for t in USER_TRANSPORTS if t)} or none")
    if m["path"] not in USER_DRIVERS[driver]:
        raise ForbiddenURI(f"only an administrator may open '{m['path']}' of the {driver} "
                           f"driver; other users: {', '.join(sorted(USER_DRIVERS[driver]))}")
    for pair in filter(None, (m["query"] or "").split("&")):
        name = pair.partition("=")[0].lower()
        if name not in USER_PARAMETERS:
            raise ForbiddenURI(f"only an administrator may give the URI parameter '{name}'; "
                               f"other users may give {', '.join(USER_PARAMETERS)}")
    host = (m["host"] or "").lower()
    if not host or is_loopback(host):
        if not host_is_local:
            raise ForbiddenURI("a URI without a host (or naming this server) reaches this "
                               "server's own libvirt: only on the server's own host, or by an "
                               "administrator")
        if transport not in ("", "unix") and not host:
            raise ForbiddenURI(f"the '{transport}' transport needs a host name")
    elif transport in ("", "unix"):
        raise ForbiddenURI(f"'{uri}' names a host but no remote transport (such as +ssh)")
    elif host != (host_address or "").strip().lower():
        raise ForbiddenURI(f"the URI names the host '{host}', but this host's address is "
                           f"{host_address or 'not set'}: only an administrator may connect a "
                           "host to somewhere else")


def daemon_key(uri: str) -> tuple[str, str, str]:
    """(driver, where, path): the same for URIs that reach one daemon by different spellings
    (`qemu:///system`, `qemu+unix:///system?mode=direct`, `qemu+tcp://127.0.0.1/system`)."""
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    where = "" if not host or is_loopback(host) else host
    return driver_of(uri), where, parts.path.rstrip("/") or "/"


def redact(uri: str) -> str:
    """The URI without user name, password or parameters (`qemu+ssh://root@h/system?keyfile=k`
    -> `qemu+ssh://h/system`): for answers given without credentials, such as /readyz."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "(not a URI)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
