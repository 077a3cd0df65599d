# Debian's own cross toolchain in a chroot, made once and cached outside the clone.
# Sourced by scripts/packages.sh; needs root (debootstrap, chroot, mount).
#
# Why a chroot: rustup cannot download targets here, and Debian ships the Rust standard
# library for arm64 and armhf as ordinary multiarch packages, next to the gcc cross linkers,
# qemu-user and dpkg-shlibdeps (which must see the foreign libc to write `Depends:`).
# The cache key is the suite, mirror and package list: change any and a new chroot is made.

CROSS_SUITE=trixie
CROSS_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CROSS_CACHE=${CITYSENSE_BUILD_CACHE:-/var/cache/citysense-build}
# rustc-web is trixie's newer Rust (1.96; plain rustc is 1.85, older than crates in Cargo.lock).
CROSS_PACKAGES=(
    rustc-web cargo-web ca-certificates gcc libc6-dev
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross libstd-rust-web-dev:arm64 libc6:arm64 libgcc-s1:arm64
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross libstd-rust-web-dev:armhf libc6:armhf libgcc-s1:armhf
    qemu-user dpkg-dev fakeroot help2man lintian file systemd
)

cross_key() {
    printf '%s\n' "$CROSS_SUITE" "$CROSS_MIRROR" "${CROSS_PACKAGES[@]}" | sha256sum | cut -c1-16
}

# Prints the chroot's path, making it first if the cache has none for this key.
cross_chroot() {
    local root
    root="$CROSS_CACHE/chroot-$(cross_key)"
    if [ -e "$root/.complete" ]; then
        echo "$root"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        echo "== installing debootstrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    local tmp="$root.tmp"
    rm -rf "$tmp"
    mkdir -p "$CROSS_CACHE"
    echo "== making the $CROSS_SUITE build chroot (cached in $root)" >&2
    debootstrap --variant=minbase "$CROSS_SUITE" "$tmp" "$CROSS_MIRROR" >&2
    echo "deb $CROSS_MIRROR $CROSS_SUITE main" >"$tmp/etc/apt/sources.list"
    chroot "$tmp" dpkg --add-architecture arm64
    chroot "$tmp" dpkg --add-architecture armhf
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    cross_mounts "$tmp"
    chroot "$tmp" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y -qq --no-install-recommends \
        "${CROSS_PACKAGES[@]}" >&2
    chroot "$tmp" apt-get clean
    cross_umounts "$tmp"
    touch "$tmp/.complete"
    rm -rf "$root"
    mv "$tmp" "$root"
    echo "$root"
}

# /proc and /dev for the tools inside; every mount is undone by cross_umounts.
cross_mounts() {
    local root=$1
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
}

cross_umounts() {
    local root=$1 m
    # Deepest first, so nested mounts (dev/pts, bind mounts under /src) go before their parents.
    for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
