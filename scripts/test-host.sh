#!/usr/bin/env bash
# A second libvirt host on this machine, for multi-host tests (docs/testing.md):
#
#   scripts/test-host.sh start NAME   prints the host's libvirt URI (qemu+tcp://10.254.X.2/system)
#   scripts/test-host.sh stop NAME    removes the host and everything start made
#
# The host is a libvirtd with its own virtlogd in a network namespace of its own (joined to this
# machine by a veth pair on 10.254.X.0/24, X derived from NAME) and a private mount namespace
# where its own /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and
# /var/cache/libvirt are bind-mounted from /var/tmp/enomalism-test-hosts/NAME/. It has a host_uuid
# and a hostname of its own and listens on qemu+tcp (no authentication) on its veth address only.
# The machine's own libvirtd and its /run/libvirt are never touched. Both commands are idempotent
# and clean up what a killed run left. Only stdout's one line of `start` is for programs;
# everything else goes to stderr. Exit status: 0 done, 1 failed, 2 usage or missing tool,
# 3 NAME's subnet clashes with a route of this machine (choose another NAME).
set -euo pipefail

ROOT=${ENOMALISM_TEST_HOSTS_DIR:-/var/tmp/enomalism-test-hosts}

say() { echo "test-host: $*" >&2; }
fail() { local code=$1; shift; say "$@"; exit "$code"; }

[ $# -eq 2 ] || fail 2 "usage: $0 start|stop NAME"
CMD=$1 NAME=$2
[[ $NAME =~ ^[a-z0-9][a-z0-9-]{0,31}$ ]] \
  || fail 2 "NAME must be 1-32 characters of a-z, 0-9 and '-' (got '$NAME')"

# Everything about the host follows from NAME, so a later run finds what an earlier one made.
HASH=$(printf 'enomalism-test-host:%s' "$NAME" | sha256sum | cut -c1-32)
OCTET=$(( 0x${HASH:0:4} % 254 + 1 ))
SUBNET=10.254.$OCTET.0/24
HOST_IP=10.254.$OCTET.1  # this machine's end of the veth pair
NS_IP=10.254.$OCTET.2    # the test host's end
NETNS=enomalism-test-host-$NAME
VETH=enth${HASH:0:8}     # interface names are at most 15 characters
PEER=${VETH}p            # renamed eth0 inside the namespace
HOST_UUID=${HASH:0:8}-${HASH:8:4}-4${HASH:13:3}-8${HASH:17:3}-${HASH:20:12}
DIR=$ROOT/$NAME
URI=qemu+tcp://$NS_IP/system

[ "$CMD" = start ] || [ "$CMD" = stop ] || fail 2 "usage: $0 start|stop NAME"
[ "$(id -u)" -eq 0 ] || fail 2 "must run as root (network and mount namespaces)"
for tool in ip unshare flock mountpoint libvirtd virtlogd virsh sha256sum; do
  command -v "$tool" >/dev/null || fail 2 "$tool is not installed"
done

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"  # one start or stop at a time: subnets are checked, then taken
flock -w 300 9 || fail 1 "another test-host.sh did not finish within 300 s"

netns_exists() { [ -e "/run/netns/$NETNS" ]; }

running() {
  netns_exists && [ -n "$(ip netns pids "$NETNS" 2>/dev/null)" ] \
    && timeout 10 virsh -c "$URI" uri >/dev/null 2>&1
}

remove() {
  # Every process in the namespace is the host's (libvirtd, virtlogd, its QEMUs, dnsmasq):
  # asked to stop, then killed. Then the namespace, the veth (gone with the namespace unless
  # it never got there) and the directory.
  local pids i
  if netns_exists; then
    pids=$(ip netns pids "$NETNS" || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for i in $(seq 1 100); do
        [ -z "$(ip netns pids "$NETNS" || true)" ] && break
        [ "$i" -eq 50 ] && { pids=$(ip netns pids "$NETNS" || true);
                             [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true; }
        sleep 0.1
      done
      [ -z "$(ip netns pids "$NETNS" || true)" ] || fail 1 "processes in $NETNS survived SIGKILL"
    fi
    ip netns del "$NETNS"
  fi
  # ip netns add made /run/netns a mount point (a bind mount onto itself): gone once unused.
  if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ] && mountpoint -q /run/netns; then
    umount /run/netns && rmdir /run/netns
  fi
  # The veth pair goes with the namespace, a moment later (the kernel tears it down in the
  # background); one that never got there is deleted here.
  for i in $(seq 1 50); do
    ip link show "$VETH" >/dev/null 2>&1 || break
    ip link del "$VETH" 2>/dev/null || true
    sleep 0.1
  done
  if ip link show "$VETH" >/dev/null 2>&1; then fail 1 "could not delete $VETH"; fi
  rm -rf --one-file-system "$DIR"
}

ip2int() { local IFS=.; set -- $1; echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }

clash() {
  # The first route of this machine (any table, any type) that overlaps SUBNET, if any; the
  # default route overlaps everything and is no clash.
  local ours len net bits mask
  ours=$(ip2int "${SUBNET%/*}")
  while read -r dest; do
    net=${dest%/*}; bits=32; [ "$dest" != "$net" ] && bits=${dest#*/}
    len=$(( bits < 24 ? bits : 24 ))
    mask=$(( len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff ))
    if (( ($(ip2int "$net") & mask) == (ours & mask) )); then echo "$dest"; return; fi
  done < <(ip -4 route show table all | grep -oE '^([a-z]+ )?[0-9.]+(/[0-9]+)?' \
             | grep -oE '[0-9.]+(/[0-9]+)?$' || true)
}

configure() {
  mkdir -p "$DIR"/{etc,lib,run,log,cache}
  chmod 755 "$DIR" "$DIR"/*  # QEMU runs as libvirt-qemu and must reach its directories
  { cat /etc/hosts; echo "$NS_IP th-$NAME"; } >"$DIR/hosts"
  cat >"$DIR/etc/libvirtd.conf" <<EOF
# Written by scripts/test-host.sh for the test host $NAME.
host_uuid = "$HOST_UUID"
listen_tls = 0
listen_tcp = 1
listen_addr = "$NS_IP"
auth_tcp = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$DIR/etc/qemu.conf" <<EOF
# Written by scripts/test-host.sh for the test host $NAME.
# No cgroups: the main libvirtd places its guests in the same (shared) cgroup trees.
cgroup_controllers = [ ]
# No per-guest /dev namespace: fewer moving parts inside an already private mount namespace.
namespaces = [ ]
# Incoming migrations listen on, and are announced with, the veth address.
migration_address = "$NS_IP"
migration_host = "$NS_IP"
EOF
}

# What runs inside the new namespaces ($1 NAME, $2 its directory): the hostname (libvirt refuses
# to migrate between hosts of one hostname) and an /etc/hosts that has it, the bind mounts, then
# the daemons, each with its pid
# file in its own /run/libvirt (the defaults, /run/virtlogd.pid and /run/libvirtd.pid, are the
# main daemons').
INSIDE='
  hostname "th-$1"
  mount --bind "$2/hosts" /etc/hosts  # libvirt resolves its hostname: no DNS wait for it
  for pair in etc:/etc/libvirt lib:/var/lib/libvirt run:/run/libvirt log:/var/log/libvirt \
              cache:/var/cache/libvirt; do
    mount --bind "$2/${pair%%:*}" "${pair#*:}"
  done
  virtlogd -d -p /run/libvirt/virtlogd.pid
  exec libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
'

start() {
  if running; then echo "$URI"; return; fi
  remove  # whatever a killed run left
  local route
  route=$(clash)
  [ -z "$route" ] || fail 3 "$SUBNET (for NAME '$NAME') overlaps the route to $route" \
                            "on this machine; choose another NAME"
  configure
  ip netns add "$NETNS"
  ip link add "$VETH" type veth peer name "$PEER"
  ip link set "$PEER" netns "$NETNS"
  ip -n "$NETNS" link set "$PEER" name eth0
  ip -n "$NETNS" addr add "$NS_IP/24" dev eth0
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" link set eth0 up
  ip -n "$NETNS" route add default via "$HOST_IP"  # this machine's own addresses, too
  ip addr add "$HOST_IP/24" dev "$VETH"
  ip link set "$VETH" up
  # ip netns exec gives a mount namespace of its own already; unshare makes one that is
  # private (no bind mount propagates back) and a UTS namespace for the hostname.
  setsid ip netns exec "$NETNS" unshare --mount --uts --propagation private -- \
    bash -euc "$INSIDE" inside "$NAME" "$DIR" </dev/null >>"$DIR/log/daemon.log" 2>&1 9>&- &
  local i
  for i in $(seq 1 600); do
    running && { say "$NAME is up (host_uuid $HOST_UUID)"; echo "$URI"; return; }
    if [ $(( i % 10 )) -eq 0 ] && [ -z "$(ip netns pids "$NETNS" || true)" ]; then
      break  # the daemon is gone
    fi
    sleep 0.1
  done
  say "libvirtd of $NAME did not answer on $URI; its logs:"
  tail -n 20 "$DIR/log/daemon.log" "$DIR/log/libvirtd.log" >&2 2>/dev/null || true
  remove
  exit 1
}

case $CMD in
  start) start ;;
  stop) remove; say "$NAME removed" ;;
esac
