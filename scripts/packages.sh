#!/usr/bin/env bash
# One command for the Raspberry Pi builds: cross-builds release binaries for amd64, arm64
# (aarch64-unknown-linux-gnu) and armhf (armv7-unknown-linux-gnueabihf) with Debian trixie's
# toolchain in a cached chroot (scripts/cross/chroot.sh), runs the aarch64 unit tests under
# qemu-user, makes the three .deb files and checks them (dpkg-deb -I, lintian, the glibc they
# need, a real install/upgrade/remove/purge of the amd64 one), then runs the architecture
# acceptance tests (tests/it/arch.rs) on both ARM binaries under qemu against real servers.
#
# Needs root (debootstrap, chroot, mount). Output: target/packages/citysense_<ver>_<arch>.deb.
# The chroot and the chroot's cargo target dir are cached in $CITYSENSE_BUILD_CACHE
# (default /var/cache/citysense-build), keyed by the chroot's package list.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
# shellcheck source=scripts/cross/chroot.sh
source scripts/cross/chroot.sh

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/packages.sh needs root (debootstrap, chroot, mount)" >&2
    exit 1
fi

# Oldest glibc the packages must run on: Raspberry Pi OS bookworm (Debian 12).
MAX_GLIBC=2.36
TRIPLES=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
declare -A DEB_ARCH=([x86_64-unknown-linux-gnu]=amd64 [aarch64-unknown-linux-gnu]=arm64
    [armv7-unknown-linux-gnueabihf]=armhf)
declare -A QEMU=([aarch64-unknown-linux-gnu]=qemu-aarch64 [armv7-unknown-linux-gnueabihf]=qemu-arm)
declare -A SYSROOT=([aarch64-unknown-linux-gnu]=/usr/aarch64-linux-gnu
    [armv7-unknown-linux-gnueabihf]=/usr/arm-linux-gnueabihf)

root=$(cross_chroot)
build=$CROSS_CACHE/target-$(cross_key)
out=$src/target/packages
scratch=$(mktemp -d)
cleanup() {
    cross_umounts "$root"
    cross_umounts "$scratch"
    rm -rf "$scratch"
}
trap cleanup EXIT

cross_mounts "$root"
registry=${CARGO_HOME:-$HOME/.cargo}/registry
mkdir -p "$root/src" "$root/build" "$root/cargo/registry" "$build" "$registry" "$out"
mount --bind "$src" "$root/src"
mount --bind "$build" "$root/build"
# The host's crate cache: crates the host build fetched are not fetched again.
mount --bind "$registry" "$root/cargo/registry"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# The man page and changelog dates come from the last commit, so a tree makes the same package.
# Not given to cargo: the `cc` build script reruns when it changes (ring, and all above it).
epoch=$(git -C "$src" log -1 --format=%ct 2>/dev/null || echo 0)

in_chroot() {
    chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb \
        CARGO_HOME=/cargo CARGO_TARGET_DIR=/build CARGO_TERM_COLOR=never \
        CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L ${SYSROOT[aarch64-unknown-linux-gnu]}" \
        CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
        CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L ${SYSROOT[armv7-unknown-linux-gnueabihf]}" \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
        "$@"
}

echo "== cross-build release binaries: ${TRIPLES[*]}"
target_args=()
for t in "${TRIPLES[@]}"; do target_args+=(--target "$t"); done
in_chroot sh -c "cd /src && cargo build --release --locked --bin citysensed ${target_args[*]}"

echo "== aarch64 unit tests under qemu-aarch64"
in_chroot sh -c "cd /src && cargo test --locked --target aarch64-unknown-linux-gnu --lib --bins"

echo "== glibc each binary needs (at most $MAX_GLIBC, Raspberry Pi OS bookworm)"
for t in "${TRIPLES[@]}"; do
    bin=$build/$t/release/citysensed
    need=$(in_chroot readelf -W --dyn-syms "/build/$t/release/citysensed" |
        grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
    printf '  %-32s glibc %s, %s bytes stripped\n' "$t" "$need" "$(stat -c %s "$bin")"
    if [ "$(printf '%s\n%s\n' "$need" "$MAX_GLIBC" | sort -V | tail -n1)" != "$MAX_GLIBC" ]; then
        echo "$t needs glibc $need, newer than $MAX_GLIBC" >&2
        exit 1
    fi
done

echo "== man page (help2man, from the amd64 binary's --help)"
in_chroot env SOURCE_DATE_EPOCH="$epoch" help2man --no-info --section 8 --name "smart-city sensor gateway daemon" \
    --include /src/packaging/deb/citysensed.h2m \
    --version-string "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" \
    --output /build/citysensed.8 /build/x86_64-unknown-linux-gnu/release/citysensed

echo "== packages"
rm -f "$out"/citysense_*.deb
for t in "${TRIPLES[@]}"; do
    # dpkg-shlibdeps warns about the usr-merge diversions trixie's libc6 makes; they are harmless.
    in_chroot env SOURCE_DATE_EPOCH="$epoch" /src/scripts/cross/deb.sh "${DEB_ARCH[$t]}" "/build/$t/release/citysensed" \
        /build/citysensed.8 /src/target/packages 2> >(grep -v -e 'diversion' >&2)
done
for deb in "$out"/citysense_*.deb; do
    echo "-- $(basename "$deb")"
    dpkg-deb -I "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/  &/p'
    dpkg-deb -c "$deb" | awk '$6 !~ /\/$/ && $6 !~ /examples\/firmware-config\/./ { print "   ", $6 }'
done

echo "== lintian"
# Tags judged not relevant here, each with its reason in packaging/deb/lintian-suppress.
suppress=$(grep -v '^#' packaging/deb/lintian-suppress | cut -d' ' -f1 | paste -sd, -)
# As nobody: lintian unpacks what it checks and warns when run as root.
debs=()
for deb in "$out"/citysense_*.deb; do debs+=("/src/target/packages/$(basename "$deb")"); done
in_chroot setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/tmp \
    lintian --fail-on error,warning ${suppress:+--suppress-tags "$suppress"} "${debs[@]}"

echo "== install, upgrade, remove, purge the amd64 package in a throwaway root"
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
cross_mounts "$scratch/root"
cp "$out"/citysense_*_amd64.deb "$scratch/root/tmp/"
cp scripts/cross/install-test.sh "$scratch/root/tmp/"
chroot "$scratch/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    bash /tmp/install-test.sh "/tmp/$(basename "$out"/citysense_*_amd64.deb)"

echo "== architecture acceptance tests (tests/it/arch.rs) on the ARM binaries under qemu"
for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    echo "-- $t"
    CITYSENSE_BIN=$build/$t/release/citysensed \
        CITYSENSE_RUNNER="$root/usr/bin/${QEMU[$t]} -L $root${SYSROOT[$t]}" \
        cargo test --locked --test it arch:: -- --test-threads 1
done
echo "== packages ok: $(ls "$out" | paste -sd " " -)"
