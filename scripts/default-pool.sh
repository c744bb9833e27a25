#!/usr/bin/env bash
# For `make run`: give qemu:///system a storage pool named "default" (a directory pool at
# /var/lib/libvirt/images, as virt-manager would make) when it has none, so provisioning works
# on a fresh machine. Leaves an existing pool alone.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exit 0
command -v virsh >/dev/null || exit 0
v() { virsh -q -c qemu:///system "$@"; }
if ! v pool-info default >/dev/null 2>&1; then
  mkdir -p /var/lib/libvirt/images
  v pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  v pool-autostart default >/dev/null
  echo "default-pool: defined storage pool 'default' at /var/lib/libvirt/images"
fi
v pool-info default 2>/dev/null | grep -q "State:.*running" || v pool-start default >/dev/null
