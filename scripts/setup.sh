#!/usr/bin/env bash
# Brings a Debian 12 machine to what `make run` and `make test` need, installing only what is
# missing: Debian packages (when run as root), /dev/kvm usable by libvirt's QEMU user
# (scripts/kvm-device.sh), a .venv with the project in it, and running virtlogd and libvirtd.
# Says what it changed. Safe to run again and again, also where libvirt is already in use.
set -euo pipefail
cd "$(dirname "$0")/.."

# One a line (several changes add to this list). libvirt comes without its recommends, so what
# its NAT networks need is named here: dnsmasq-base (their DHCP and DNS), dnsmasq-utils
# (dhcp_release, to end a freed address's lease). chromium and chromium-driver: the dashboard's
# browser tests (tests/ui). openssh-server and netcat-openbsd: the VNC console through a
# host's SSH transport (tests/integration/test_console_ssh.py runs an sshd of its own).
APT_PACKAGES=(
  libvirt-daemon-system
  libvirt-daemon-driver-qemu
  libvirt-clients
  qemu-system-x86
  qemu-utils
  dnsmasq-base
  dnsmasq-utils
  libvirt-dev
  pkg-config
  gcc
  python3-dev
  python3-venv
  postgresql
  chromium
  chromium-driver
  openssh-server
  netcat-openbsd
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

scripts/kvm-device.sh
scripts/start-libvirt.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
