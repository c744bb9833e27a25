"""Turning `libvirtError` into the project's errors, in one place."""

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from enomalism.errors import (
    Conflict,
    EnomalismError,
    HypervisorError,
    HypervisorUnreachable,
    InvalidState,
    InvalidXML,
    NotFound,
)

# A system error is a lost connection only when the RPC layer raised it (checked below); from
# a driver it is a failing disk, a full file system or a permission: the hypervisor refused.
_UNREACHABLE = {
    libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
}
_XML = {
    libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL, libvirt.VIR_ERR_XML_INVALID_SCHEMA,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED, libvirt.VIR_ERR_INVALID_ARG,
}


def translate(e: libvirt.libvirtError, *, xml: bool = False) -> EnomalismError:
    code, msg = e.get_error_code(), (e.get_error_message() or str(e))
    # A connection whose daemon went away answers "client socket is closed", an internal
    # error of the RPC layer, until the close callback has replaced it.
    if code in _UNREACHABLE or e.get_error_domain() in (libvirt.VIR_FROM_RPC,
                                                          libvirt.VIR_FROM_REMOTE):
        return HypervisorUnreachable(f"hypervisor connection failed: {msg}")
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(f"the domain does not exist on its hypervisor: {msg}")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return InvalidState(msg)
    if code == libvirt.VIR_ERR_DOM_EXIST:
        return Conflict(msg)
    if xml and code in _XML | {libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_ERR_INTERNAL_ERROR}:
        return InvalidXML(f"libvirt rejected the domain XML: {msg}")
    if code == libvirt.VIR_ERR_NO_SUPPORT:
        return HypervisorError(f"not supported by this hypervisor: {msg}")
    return HypervisorError(msg)


@contextmanager
def libvirt_errors(*, xml: bool = False) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as e:
        raise translate(e, xml=xml) from None
