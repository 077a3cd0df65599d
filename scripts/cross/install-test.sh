#!/usr/bin/env bash
# Installs, upgrades, removes and purges the amd64 .deb for real, inside a throwaway root
# (an overlay on the build chroot, made by scripts/packages.sh), and checks what an operator
# relies on at each step. Runs inside that root. Usage: install-test.sh <deb>
set -euo pipefail
deb=$1
fail() { echo "install test: $*" >&2; exit 1; }
conf=/etc/citysense/citysense.toml
spool=/var/lib/private/citysense/spool

echo "-- dpkg -i"
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/citysensed ] || fail "no /usr/bin/citysensed"
dpkg-query -W -f='${Conffiles}\n' citysense | grep -q "$conf" || fail "$conf is not a conffile"
[ -e /etc/systemd/system/multi-user.target.wants/citysense.service ] &&
    fail "install enabled the service on an unedited config"
citysensed validate -c "$conf" || fail "the installed config does not validate"
# LoadCredential= fails the start when its file is missing (tests/vm found it on systemd 252).
[ "$(stat -c '%a %U %s' /etc/citysense/influx-token 2>&1)" = "600 root 0" ] ||
    fail "no empty root-only /etc/citysense/influx-token for the unit's LoadCredential="
systemd-analyze verify /usr/lib/systemd/system/citysense.service ||
    fail "systemd-analyze verify failed on the installed unit"
man -w citysensed >/dev/null 2>&1 || [ -e /usr/share/man/man8/citysensed.8.gz ] || fail "no man page"

echo "-- upgrade (to the same package as version +1) keeps an edited config and the spool"
next=$(mktemp -d)
dpkg-deb -R "$deb" "$next/pkg"
sed -i 's/^Version: \(.*\)-\([0-9]*\)$/Version: \1-\2+1/' "$next/pkg/DEBIAN/control"
dpkg-deb --root-owner-group --build "$next/pkg" "$next/next.deb" >/dev/null
printf '\n# edited by the operator\n' >>"$conf"
printf 'the-operators-token' >/etc/citysense/influx-token
mkdir -p "$spool" && echo spooled >"$spool/segment-test"
ln -s private/citysense /var/lib/citysense
dpkg -i "$next/next.deb" >/dev/null
dpkg-query -W -f='${Version}\n' citysense | grep -q '+1$' || fail "the upgrade did not take"
grep -q "edited by the operator" "$conf" || fail "upgrade replaced the edited config"
[ "$(cat /etc/citysense/influx-token)" = the-operators-token ] || fail "upgrade replaced the token"
[ -e "$spool/segment-test" ] || fail "upgrade lost the spool"
citysensed validate -c "$conf" >/dev/null || fail "the edited config no longer validates"

echo "-- remove keeps the spool and the config"
dpkg -r citysense >/dev/null
[ ! -e /usr/bin/citysensed ] || fail "remove left the binary"
[ -e "$spool/segment-test" ] || fail "remove deleted the spool"
[ -e "$conf" ] || fail "remove deleted the config"

echo "-- purge removes both"
dpkg -P citysense >/dev/null
[ ! -e /var/lib/private/citysense ] || fail "purge left the spool"
[ ! -e /var/lib/citysense ] || fail "purge left /var/lib/citysense"
[ ! -e "$conf" ] || fail "purge left the config"
[ ! -e /etc/citysense/influx-token ] || fail "purge left the token"
echo "install test: ok"
