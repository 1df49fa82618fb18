# Shared by the scripts in this folder: finding Swift and installing what the build needs.
# Sourced, not run.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build, the tests and the demo need.
required_packages=(libssl-dev libcurl4-openssl-dev libmbedtls-dev openssl pkg-config ca-certificates)

say() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

# Swift is expected on PATH or at /opt/swift/usr/bin.
find_swift() {
    if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    fi
    if ! command -v swift >/dev/null 2>&1; then
        say "Swift 6.3 not found: put it on PATH or at /opt/swift/usr/bin"
        exit 2
    fi
}

# Installs the missing Debian packages with apt-get (as root, or through sudo).
install_packages() {
    local missing=()
    local package
    for package in "${required_packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi

    local run_as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        run_as_root=(sudo)
    fi
    say "installing ${missing[*]}"
    "${run_as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${run_as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
