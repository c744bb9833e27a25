"""What the server process starts and stops: the hypervisor registry and its threads (and the
inventory writes they make), node ownership, restarts on failure, lost uploads, package sync.
Below services/ and jobs/, which are handed its objects: it imports neither."""
