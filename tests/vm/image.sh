# The VM test's guest image: a minimal Debian bookworm (systemd 252, the release the README's
# figures are for) with the broker (mosquitto) and the store (victoria-metrics) inside, made
# by debootstrap from Debian's packages only. Sourced by tests/vm/run.sh; needs root.
#
# Cached outside the clone in $CITYSENSE_BUILD_CACHE/vm-<key> (rootfs.img, vmlinuz,
# initrd.img), keyed by the suite, mirror, package list and this file: change any and a new
# image is made. The image holds no test logic: its runner unit runs guest.sh from the share.

VM_SUITE=bookworm
VM_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VM_CACHE=${CITYSENSE_BUILD_CACHE:-/var/cache/citysense-build}
VM_PACKAGES=(
    systemd-sysv udev dbus linux-image-amd64 initramfs-tools
    mosquitto mosquitto-clients victoria-metrics curl adjtimex procps
)
VM_IMAGE_MB=1536

vm_key() {
    { printf '%s\n' "$VM_SUITE" "$VM_MIRROR" "${VM_PACKAGES[@]}"; cat "${BASH_SOURCE[0]}"; } |
        sha256sum | cut -c1-16
}

# Prints the image directory, making the image first if the cache has none for this key.
vm_image() {
    local dir tmp root
    dir="$VM_CACHE/vm-$(vm_key)"
    if [ -e "$dir/.complete" ]; then
        echo "$dir"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        echo "== installing debootstrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    tmp="$dir.tmp" root="$dir.tmp/root"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    echo "== making the $VM_SUITE guest image (cached in $dir)" >&2
    debootstrap --variant=minbase "$VM_SUITE" "$root" "$VM_MIRROR" >&2
    echo "deb $VM_MIRROR $VM_SUITE main" >"$root/etc/apt/sources.list"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # No service starts inside the build chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    # A small initrd: the guest's disk is virtio, its root ext4 (MODULES=most takes seconds
    # more to unpack under TCG on every boot).
    mkdir -p "$root/etc/initramfs-tools/conf.d"
    echo "MODULES=list" >"$root/etc/initramfs-tools/conf.d/citysense-vm.conf"
    mkdir -p "$root/etc/initramfs-tools"
    printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >"$root/etc/initramfs-tools/modules"
    cross_mounts "$root"
    chroot "$root" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${VM_PACKAGES[@]}" >&2
    chroot "$root" apt-get clean
    chroot "$root" systemd-machine-id-setup >&2
    cross_umounts "$root"
    rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
    vm_configure "$root"
    cp "$root"/boot/vmlinuz-* "$tmp/vmlinuz"
    cp "$root"/boot/initrd.img-* "$tmp/initrd.img"
    chmod 0644 "$tmp/vmlinuz" "$tmp/initrd.img"
    mkfs.ext4 -q -F -L root -d "$root" "$tmp/rootfs.img" "${VM_IMAGE_MB}M" >&2
    rm -rf "$root"
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    echo "$dir"
}

# The guest's own settings: root on /dev/vda, a runner unit that mounts the 9p share and runs
# its guest.sh, and nothing that would wake up on a timer during a test.
vm_configure() {
    local root=$1 t
    echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$root/etc/fstab"
    echo citysense-vm >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 citysense-vm\n' >"$root/etc/hosts"
    # The journal in RAM: after a power cut nothing waits for damaged journal files, and
    # what the test needs from it goes out through the share while the guest runs.
    mkdir -p "$root/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/citysense-vm.conf"
    for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer systemd-firstboot.service; do
        ln -sf /dev/null "$root/etc/systemd/system/$t"
    done
    cat >"$root/usr/local/sbin/vm-runner" <<'RUNNER'
#!/bin/sh
# Mounts the host's share and runs the test's guest.sh from it (tests/vm/run.sh).
mkdir -p /mnt/share
# The virtio-9p channel may register after this unit starts ("no channels available for
# device share" under a loaded host): try again for up to 30 s.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        echo "vm-runner: no 9p share" >/dev/console
        exec systemctl poweroff --force
    fi
    sleep 0.5
done
exec /bin/bash /mnt/share/guest.sh
RUNNER
    chmod 0755 "$root/usr/local/sbin/vm-runner"
    cat >"$root/etc/systemd/system/vm-runner.service" <<'UNIT'
[Unit]
Description=citysense VM test runner (tests/vm)
After=local-fs.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/vm-runner
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/vm-runner.service \
        "$root/etc/systemd/system/multi-user.target.wants/vm-runner.service"
}
