#!/usr/bin/env bash
# Makes /dev/kvm root:kvm 0660, as Debian's udev rule does, where no udev rule ran (a container,
# a machine without udev) and it is left root-only. Without it libvirt finds KVM usable when it
# probes QEMU but not usable by its QEMU user (libvirt-qemu, in group kvm), throws its
# capabilities cache away and probes QEMU again on every call: each define takes seconds.
# Leaves alone a /dev/kvm the group kvm or everyone may already use. Says what it changed.
set -euo pipefail
[ -c /dev/kvm ] || exit 0
read -r owner group mode < <(stat -c '%U %G %a' /dev/kvm)
shown=$(printf "%04o" "$((8#$mode))")
if [ "$group" = kvm ] && (( (8#$mode & 8#060) == 8#060 )); then exit 0; fi
if (( (8#$mode & 8#006) == 8#006 )); then exit 0; fi
if ! getent group kvm >/dev/null; then
  echo "kvm-device: /dev/kvm is $owner:$group $shown and there is no group kvm; libvirt's" \
       "QEMU user may not be able to use it (install libvirt-daemon-system)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "kvm-device: /dev/kvm is $owner:$group $shown; run as root to make it root:kvm 0660" >&2
  exit 0
fi
chgrp kvm /dev/kvm
chmod 0660 /dev/kvm
echo "kvm-device: /dev/kvm was $owner:$group $shown (no udev rule ran); made it $owner:kvm 0660" \
     "as Debian's udev rule does, so that libvirt's QEMU user can use KVM (until the next boot)"
