#!/usr/bin/env bash
# Starts virtlogd and libvirtd when they are not running (there is no systemd here) and waits
# until libvirtd answers on its socket.
set -euo pipefail
command -v libvirtd >/dev/null || { echo "start-libvirt: libvirtd is not installed" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || { echo "start-libvirt: not root; using whatever libvirtd runs" >&2; exit 0; }
mkdir -p /var/run/libvirt /var/log/libvirt
# Only live processes count: a daemon that exited and is not reaped yet (a zombie) is not running.
pgrep -x -r R,S,D,T virtlogd >/dev/null || virtlogd -d
pgrep -x -r R,S,D,T libvirtd >/dev/null || libvirtd -d
for _ in $(seq 1 100); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "start-libvirt: libvirtd did not answer on qemu:///system" >&2
exit 1
