#!/usr/bin/env bash
# Makes citysense_<version>_<arch>.deb from a release binary. Runs inside the build chroot
# (scripts/cross/chroot.sh), where dpkg-shlibdeps sees the foreign libc to derive `Depends:`.
# Usage: deb.sh <debian-arch> <binary> <man-page> <out-dir>
set -euo pipefail
arch=$1 bin=$2 man=$3 out=$4
src=$(cd "$(dirname "$0")/../.." && pwd)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/Cargo.toml" | head -n1)
debver="$version-1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg doc=$work/pkg/usr/share/doc/citysense

install -D -m 0755 "$bin" "$pkg/usr/bin/citysensed"
install -D -m 0644 "$src/systemd/citysense.service" "$pkg/usr/lib/systemd/system/citysense.service"
install -D -m 0644 "$src/packaging/deb/citysense.toml" "$pkg/etc/citysense/citysense.toml"
install -D -m 0644 "$src/systemd/citysense.default" "$pkg/etc/default/citysense"
install -D -m 0644 "$src/firmware-config/raspberry-pi/99-citysense-serial.rules" \
    "$pkg/usr/lib/udev/rules.d/99-citysense-serial.rules"
# README.md stays uncompressed: the unit's Documentation= points at it.
install -D -m 0644 "$src/README.md" "$doc/README.md"
install -D -m 0644 "$src/packaging/deb/copyright" "$doc/copyright"
mkdir -p "$doc/examples"
cp -r "$src/firmware-config" "$doc/examples/firmware-config"
find "$doc/examples" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
install -D -m 0644 "$man" "$pkg/usr/share/man/man8/citysensed.8"
gzip -9n "$pkg/usr/share/man/man8/citysensed.8"
# A changelog entry dated by the last commit, so the same tree makes the same package.
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-0}")
printf 'citysense (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- citysense developers <citysense@example.invalid>  %s\n' \
    "$debver" "$version" "$date" | gzip -9n >"$doc/changelog.Debian.gz"

mkdir -p "$pkg/DEBIAN" "$work/debian"
install -m 0755 "$src/packaging/deb/postinst" "$src/packaging/deb/prerm" \
    "$src/packaging/deb/postrm" "$pkg/DEBIAN/"
printf '/etc/citysense/citysense.toml\n/etc/default/citysense\n' >"$pkg/DEBIAN/conffiles"
# dpkg-shlibdeps reads debian/control for the package list; a stub is enough.
printf 'Source: citysense\n\nPackage: citysense\nArchitecture: any\n' >"$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O "$pkg/usr/bin/citysensed" | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "dpkg-shlibdeps found no dependencies for $bin" >&2; exit 1; }
(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)

cat >"$pkg/DEBIAN/control" <<CONTROL
Package: citysense
Version: $debver
Architecture: $arch
Maintainer: citysense developers <citysense@example.invalid>
Installed-Size: $size
Depends: $depends
Suggests: mosquitto
Section: net
Priority: optional
Description: smart-city sensor gateway: air quality and footfall to InfluxDB
 citysensed reads air-quality sensors and people counters over serial ports
 (SDS011, PMS5003/7003, MH-Z19B, SPS30) and MQTT (ESPHome, Tasmota, The Things
 Network), aggregates their readings into clock-aligned windows and forwards
 them as InfluxDB line protocol to a municipality's own time-series store
 (InfluxDB 1.x/2.x/3.x, VictoriaMetrics). A crash-safe disk spool keeps every
 window while the uplink is down. Footfall leaves the gateway as counts only.
CONTROL

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out/citysense_${debver}_${arch}.deb" >/dev/null
echo "$out/citysense_${debver}_${arch}.deb"
