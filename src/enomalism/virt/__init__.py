"""The hypervisor boundary. Only this package imports `libvirt`; everything it hands out is the
project's own types and errors."""
