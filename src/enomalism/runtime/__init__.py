"""What the server process starts and stops: the hypervisor registry and its threads, node
ownership, package sync."""
