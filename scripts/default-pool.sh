#!/usr/bin/env bash
# For `make run`: give qemu:///system a storage pool named "default" (a directory pool at
# /var/lib/libvirt/images, as virt-manager would make) when it has none, and start it when it
# is stopped, so provisioning works on a fresh machine. A pool that exists (wherever it points)
# is left as it is; one already running is not touched. Safe to run again and again.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exit 0
command -v virsh >/dev/null || exit 0
v() { virsh -q -c qemu:///system "$@"; }
# Read virsh's whole answer before matching it: `virsh ... | grep -q` under pipefail fails when
# grep exits at the first match and virsh then dies of SIGPIPE.
if ! v pool-info default >/dev/null 2>&1; then
  mkdir -p /var/lib/libvirt/images
  v pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  v pool-autostart default >/dev/null
  echo "default-pool: defined storage pool 'default' at /var/lib/libvirt/images"
fi
info=$(v pool-info default 2>/dev/null || true)
if [[ ! "$info" =~ State:[[:space:]]+running ]]; then
  # Another tool may start it between our look and our start: only a pool still not running
  # after a failed start is an error.
  if ! err=$(v pool-start default 2>&1 >/dev/null); then
    info=$(v pool-info default 2>/dev/null || true)
    [[ "$info" =~ State:[[:space:]]+running ]] || { echo "default-pool: $err" >&2; exit 1; }
  else
    echo "default-pool: started storage pool 'default'"
  fi
fi
