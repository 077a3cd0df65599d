# Shared by the benchmark scripts (sourced, not run).

# need_tools CMD:PACKAGE...: apt-get installs the packages whose command is missing, so each
# script runs on a fresh Debian machine (as root) with one command.
need_tools() {
    local need=() pair cmd
    for pair in "$@"; do
        cmd=${pair%%:*}
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("${pair#*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    echo "== installing: ${need[*]}" >&2
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${need[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
}
