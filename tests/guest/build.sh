#!/bin/sh
# The tests' tiny real guest: sh build.sh OUTDIR  ->  OUTDIR/tiny.qcow2
#
# A 32 MiB raw disk holding one FAT16 filesystem (no partition table) with SYSLINUX in its boot
# sector, the Debian cloud kernel and a busybox initramfs; SeaBIOS boots it, so the disk alone
# is the guest (it travels in an enomalism package like any image). Converted to qcow2.
#
# Its init reports on ttyS0 (115200), one marker a line:
#   GUEST-BOOTED                       init runs
#   GUEST-OEM=<string>                 each SMBIOS type 11 OEM string (enomalism.net<i>=...)
#   GUEST-SEED=<device>                a cloud-init NoCloud seed (an ISO 9660 CD-ROM labelled
#                                      cidata, on virtio-scsi) was found and mounted there
#   GUEST-SEED-HOSTNAME=<name>         its meta-data's local-hostname
#   GUEST-NIC=<if> MAC=<mac>           each ethernet interface
#   GUEST-SEED-ADDRESS=<if> <a>/<p>    the static address the seed's network-config gives the
#                                      interface's MAC, put on it (no DHCP on it then)
#   GUEST-IP=<address>                 the interface's IPv4 address as the kernel has it, once
#                                      udhcpc or the seed set it (GUEST-DHCP-FAILED=<if>: none)
#   GUEST-HOSTNAME=<name>              the host name DHCP gave
#   GUEST-READY                        all of the above done
#   GUEST-ACPI-POWEROFF                the ACPI power button was pressed; it powers off
#   TICK-<n>                           every 0.5 s, n = 1, 2, ..., when an SMBIOS OEM string
#                                      is `enomalism-test-tick` (a live migration's witness)
# after which a shell reads ttyS0 (prompt `# `; tests/integration/test_consoles.py types in it).
#
# Inputs: .deb files fetched with `apt-get download` into OUTDIR/debs (kept there, so a rebuild
# fetches nothing) and unpacked with dpkg -x: nothing is installed on the host. Needs apt-get,
# dpkg, gzip and qemu-img.
set -eu
OUT=$1
mkdir -p "$OUT/debs"
KERNEL=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
         | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
[ -n "$KERNEL" ] || { echo "apt-cache knows no linux-image-cloud-amd64" >&2; exit 3; }
KVER=${KERNEL#linux-image-}
cd "$OUT/debs"
ls "$KERNEL"_*.deb >/dev/null 2>&1 \
    || apt-get download "$KERNEL" busybox-static syslinux syslinux-common mtools dosfstools cpio
W=$OUT/work
rm -rf "$W"
mkdir -p "$W/x"
for d in "$KERNEL"_*.deb busybox-static_*.deb syslinux_*.deb syslinux-common_*.deb \
         mtools_*.deb dosfstools_*.deb cpio_*.deb; do
    dpkg -x "$d" "$W/x"
done
X=$W/x
PATH="$X/usr/bin:$X/bin:$X/usr/sbin:$X/sbin:$PATH"

# -- the initramfs ---------------------------------------------------------------------------
R=$W/root
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/etc/acpi/PWRF" "$R/lib/modules"
cp "$X/bin/busybox" "$R/bin/busybox"
for a in sh mount echo cat insmod ip udhcpc acpid poweroff sleep ls grep tr dd sync uname \
         awk mkdir head; do
    ln -s busybox "$R/bin/$a"
done
MODS="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover
      net_failover virtio_net virtio_blk button evdev scsi_common scsi_mod virtio_scsi cdrom
      sr_mod isofs"
for m in $MODS; do
    f=$(find "$X/lib/modules/$KVER/kernel" -name "$m.ko" | head -n1)
    [ -n "$f" ] || { echo "the kernel has no module $m" >&2; exit 3; }
    cp "$f" "$R/lib/modules/"
done
cat > "$R/etc/acpi/PWRF/00000080" <<'SH'
#!/bin/sh
# on a line of its own: the shell's prompt may stand unfinished on the console
printf '\nGUEST-ACPI-POWEROFF\n' > /dev/ttyS0
sync
poweroff -f
SH
cat > "$R/bin/dhcp-event" <<'SH'
#!/bin/sh
# udhcpc's hook: bound or renewed, the address goes on the interface and on the console
case "$1" in
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        echo "GUEST-IP=$(ip -4 -o addr show dev "$interface" | awk '{split($4, a, "/"); print a[1]; exit}')" > /dev/ttyS0
        echo "GUEST-HOSTNAME=${hostname:-}" > /dev/ttyS0 ;;
esac
SH
cat > "$R/init" <<SH
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "GUEST-BOOTED kernel=\$(uname -r)" > /dev/ttyS0
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover \\
         net_failover virtio_net virtio_blk button evdev scsi_common scsi_mod virtio_scsi \\
         cdrom sr_mod isofs; do
    insmod /lib/modules/\$m.ko 2>/dev/null
done
# acpid must see every input device's event node (the power button's among them), which
# devtmpfs makes a moment later
for i in 1 2 3 4 5 6 7 8 9 10; do
    want=\$(grep -c '^H:.*event' /proc/bus/input/devices)
    have=\$(ls /dev/input 2>/dev/null | grep -c event)
    [ "\$want" -gt 0 ] && [ "\$have" -ge "\$want" ] && break
    sleep 0.5
done
acpid -c /etc/acpi -l /tmp/acpid.log  # its default log, /var/log, does not exist
for e in /sys/firmware/dmi/entries/11-*/raw; do
    [ -f "\$e" ] || continue
    # SMBIOS type 11: a 5-byte header, then NUL-terminated strings
    dd if="\$e" bs=1 skip=5 2>/dev/null | tr '\\0' '\\n' | while read -r s; do
        [ -n "\$s" ] && echo "GUEST-OEM=\$s" > /dev/ttyS0
    done
done
if cat /sys/firmware/dmi/entries/11-*/raw 2>/dev/null | tr '\\0' '\\n' \\
        | grep -q enomalism-test-tick; then
    (n=0; while :; do n=\$((n + 1)); printf '\\nTICK-%d\\n' "\$n" > /dev/ttyS0; sleep 0.5; done) &
fi
# a NoCloud seed: a CD-ROM labelled cidata on a SCSI host (virtio-scsi); scanning is
# asynchronous, so a guest with a SCSI host waits for its CD-ROM a moment, one without none
mkdir -p /seed
seed=
tries=0
ls /sys/class/scsi_host 2>/dev/null | grep -q . && tries="1 2 3 4 5 6 7 8 9 10"
for i in \$tries; do
    for d in /dev/sr*; do
        [ -b "\$d" ] || continue
        mount -t iso9660 -o ro "\$d" /seed 2>/dev/null || continue
        if [ -f /seed/meta-data ]; then seed=\$d; break; fi
        umount /seed
    done
    [ -n "\$seed" ] && break
    sleep 0.5
done
if [ -n "\$seed" ]; then
    echo "GUEST-SEED=\$seed" > /dev/ttyS0
    h=\$(awk -F'"' '/"local-hostname"/ {print \$4; exit}' /seed/meta-data)
    echo "GUEST-SEED-HOSTNAME=\$h" > /dev/ttyS0
fi
# network-config (version 2, JSON with one key a line): the value after the interface's
# macaddress of the key \$2 (addresses: the first list item; via: the value)
seed_value() {
    [ -f /seed/network-config ] || return 0
    awk -v mac="\$1" -v key="\$2" '
        /"macaddress"/ { v = \$2; gsub(/[",]/, "", v); cur = tolower(v) }
        cur != mac { next }
        key == "addresses" && /"addresses": \[/ { want = 1; next }
        want { gsub(/[", ]/, ""); print; exit }
        key == "via" && /"via"/ { v = \$2; gsub(/[",]/, "", v); print v; exit }
    ' /seed/network-config
}
ip link set lo up
for n in /sys/class/net/*; do
    i=\${n##*/}
    [ "\$i" = lo ] && continue
    mac=\$(cat \$n/address)
    echo "GUEST-NIC=\$i MAC=\$mac" > /dev/ttyS0
    ip link set "\$i" up
    addr=\$(seed_value "\$mac" addresses)
    if [ -n "\$addr" ]; then
        ip addr add "\$addr" dev "\$i"
        echo "GUEST-SEED-ADDRESS=\$i \$addr" > /dev/ttyS0
        gw=\$(seed_value "\$mac" via)
        [ -n "\$gw" ] && ip route add default via "\$gw" dev "\$i" 2>/dev/null
        echo "GUEST-IP=\$(ip -4 -o addr show dev "\$i" | awk '{split(\$4, a, "/"); print a[1]; exit}')" > /dev/ttyS0
        continue
    fi
    udhcpc -i "\$i" -n -q -t 10 -T 2 -s /bin/dhcp-event || echo "GUEST-DHCP-FAILED=\$i" > /dev/ttyS0
done
echo GUEST-READY > /dev/ttyS0
export PS1='# '
while :; do sh -i </dev/ttyS0 >/dev/ttyS0 2>&1; sleep 1; done
SH
chmod 755 "$R/init" "$R/bin/dhcp-event" "$R/etc/acpi/PWRF/00000080"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/initrd.img"

# -- the disk --------------------------------------------------------------------------------
cat > "$W/syslinux.cfg" <<'CFG'
SERIAL 0 115200
DEFAULT tiny
PROMPT 0
TIMEOUT 1
LABEL tiny
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 panic=5 quiet loglevel=3
CFG
RAW=$W/tiny.raw
mkfs.fat -C -n TINYGUEST "$RAW" 32768 >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$RAW" "$X/boot/vmlinuz-$KVER" ::/vmlinuz
mcopy -i "$RAW" "$W/initrd.img" ::/initrd.img
mcopy -i "$RAW" "$W/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$RAW"
qemu-img convert -f raw -O qcow2 "$RAW" "$OUT/tiny.qcow2.new"
mv "$OUT/tiny.qcow2.new" "$OUT/tiny.qcow2"
rm -rf "$W"
