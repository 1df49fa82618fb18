# Shared by the scripts in this folder: finding Swift and installing what the build needs.
# Sourced, not run.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build, the tests and the demo need.
required_packages=(libssl-dev libcurl4-openssl-dev libmbedtls-dev openssl pkg-config ca-certificates)

say() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
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

# Installs the missing Debian packages with apt-get (as root, or through sudo): the ones named,
# or else required_packages.
install_packages() {
    local wanted=("${required_packages[@]}")
    if [ "$#" -gt 0 ]; then
        wanted=("$@")
    fi
    local missing=()
    local package
    for package in "${wanted[@]}"; do
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

# Espressif's esptool, pinned with what it needs in scripts/esptool-requirements.txt: the tests
# hold the agent's image checks against it. Installed from PyPI into a virtual environment of
# its own, Debian's python3 and python3-venv first.
esptool_venv="$repo_root/.build-tools/esptool"

# Installs the pinned esptool unless it is there already; sets esptool to its path. Exits (never
# skips) when it cannot: a run without it would not check what it claims to.
install_esptool() {
    esptool="$esptool_venv/bin/esptool"
    local requirements="$repo_root/scripts/esptool-requirements.txt"
    local version
    version="$(sed -n 's/^esptool==//p' "$requirements")"
    if [ -x "$esptool" ] && "$esptool" version 2>/dev/null | grep -qx "$version" &&
        cmp -s "$requirements" "$esptool_venv/requirements.txt"; then
        return
    fi

    install_packages python3 python3-venv
    say "installing esptool $version from PyPI into .build-tools/esptool"
    rm -rf "$esptool_venv"
    if ! /usr/bin/python3 -m venv "$esptool_venv" ||
        ! "$esptool_venv/bin/pip" install --quiet --disable-pip-version-check \
            --no-input -r "$requirements"; then
        say "cannot install esptool $version from PyPI (see above)"
        exit 1
    fi
    if ! "$esptool" version 2>/dev/null | grep -qx "$version"; then
        say "$esptool is not esptool $version"
        exit 1
    fi
    cp "$requirements" "$esptool_venv/requirements.txt"
}
