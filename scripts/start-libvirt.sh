#!/usr/bin/env bash
# Starts virtlogd and libvirtd when they are not running and waits until libvirtd answers on
# its socket. A running libvirtd is used as it is; on a machine booted with systemd, systemd
# starts it; elsewhere (a container, no systemd) the daemons are started here.
set -euo pipefail
command -v libvirtd >/dev/null || { echo "start-libvirt: libvirtd is not installed" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || { echo "start-libvirt: not root; using whatever libvirtd runs" >&2; exit 0; }
answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
tcp_note() {
  # A libvirtd that was already running is left as it is, even without --listen.
  if [ "${ENOMALISM_LIBVIRT_TCP:-0}" = 1 ] && ! (exec 3<>/dev/tcp/127.0.0.1/16509) 2>/dev/null; then
    echo "start-libvirt: libvirtd runs but does not listen on 127.0.0.1:16509 (it was started" \
         "without ENOMALISM_LIBVIRT_TCP=1); the remote-transport tests will be skipped" >&2
  fi
}
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  # systemd's sockets start virtlogd and libvirtd on demand: a daemon started here would find
  # its socket taken.
  answers || systemctl start libvirtd.service
else
  mkdir -p /var/run/libvirt /var/log/libvirt
fi
# The daemon of this mount namespace, by its pid file: a second test host runs its own in a
# namespace of its own (scripts/test-host.sh), which must not pass for ours. Only a live
# process counts: one that exited and is not reaped yet (a zombie) is not running.
running() {
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] &&
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
[ -d /run/systemd/system ] || running virtlogd || virtlogd -d
if [ ! -d /run/systemd/system ] && ! running libvirtd; then
  if [ "${ENOMALISM_LIBVIRT_TCP:-0}" = 1 ]; then
    # For the tests of remote transports (make test sets this): libvirtd also listens on
    # 127.0.0.1:16509 without authentication. Loopback only, but any local user could then
    # drive libvirt as root: never on a machine shared with people you do not trust.
    conf=/run/libvirt/enomalism-tcp.conf
    printf '%s\n' 'listen_tls = 0' 'listen_tcp = 1' 'listen_addr = "127.0.0.1"' \
      'auth_tcp = "none"' >"$conf"
    libvirtd -d --listen -f "$conf"
  else
    libvirtd -d
  fi
fi
for _ in $(seq 1 100); do
  answers && { tcp_note; exit 0; }
  sleep 0.1
done
echo "start-libvirt: libvirtd did not answer on qemu:///system" >&2
exit 1
