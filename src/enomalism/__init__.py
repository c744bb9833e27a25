"""enomalism: a cloud control plane implementing the Enomalism REST API 2.1 on libvirt."""

__version__ = "0.1.0"
