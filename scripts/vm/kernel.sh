# Debian 12's own kernel for the kernel TLS VMs, and the modules kernel TLS needs from it.
# Sourced by scripts/ktls-test and scripts/bench after common.sh (say, as_root), not run.

# tls itself, and the AEAD constructions it asks the crypto API for: those are found by name
# at run time (no symbol dependency modinfo could show), and the VM has no modprobe set up to
# load them on demand. AES itself is built in. Covers the agent's AES-GCM and ChaCha20-Poly1305.
ktls_modules=(tls ctr gcm ghash-generic chacha20poly1305 chacha_generic poly1305_generic)

# The real package behind the linux-image-amd64 meta-package, e.g. linux-image-6.1.0-57-amd64.
kernel_package_name() {
    local name
    name="$(kernel_dependency)"
    if [ -z "$name" ]; then
        # apt-cache knows nothing before the first `apt-get update` on a fresh machine.
        as_root apt-get update -qq >&2
        name="$(kernel_dependency)"
    fi
    if [ -z "$name" ]; then
        say "apt-cache names no linux-image-6.x package behind linux-image-amd64"
        exit 1
    fi
    printf '%s\n' "$name"
}

# What `apt-cache depends linux-image-amd64` names as the kernel image, or nothing.
kernel_dependency() {
    local listing
    listing="$(apt-cache depends linux-image-amd64 2>/dev/null)" || true
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }' \
        <<<"$listing"
}

# Downloads and unpacks the kernel package once into $1/<package>/root; sets kernel_root to
# that folder. A finished unpack is marked so that an interrupted one is redone, not trusted.
fetch_kernel() {
    local cache="$1"
    local package folder
    package="$(kernel_package_name)"
    folder="$cache/$package"
    if [ ! -e "$folder/unpacked" ]; then
        say "downloading $package"
        rm -rf "$folder"
        mkdir -p "$folder"
        # Run from the target folder: apt-get download writes to the current directory.
        # The sandbox user (_apt) may not reach the work tree, so download as ourselves.
        (cd "$folder" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$package")
        dpkg-deb -x "$folder"/"$package"_*.deb "$folder/root"
        rm -f "$folder"/"$package"_*.deb
        touch "$folder/unpacked"
    fi
    kernel_root="$folder/root"
}

# The kernel release inside an unpacked kernel package ($1), e.g. 6.1.0-57-amd64.
kernel_release() {
    local releases=("$1"/lib/modules/*)
    if [ "${#releases[@]}" -ne 1 ] || [ ! -d "${releases[0]}" ]; then
        say "expected one kernel release under $1/lib/modules"
        exit 1
    fi
    basename "${releases[0]}"
}

# Module names compare with '-' and '_' as the same character, as the kernel does.
module_key() {
    printf '%s\n' "${1//-/_}"
}

# Prints the module files ($1: the release's module folder) to insmod for the names given,
# each dependency before the modules that need it; built-in modules are left out.
# Dependencies come from `modinfo -F depends` on the files themselves, since the package ships
# no modules.dep (depmod makes it at install time).
module_load_order() {
    local modules="$1"
    shift
    # Read by visit_module through bash's dynamic scoping.
    local -A file_of=() builtin=() seen=()
    local file name
    while IFS= read -r file; do
        file_of["$(module_key "$(basename "$file" .ko)")"]="$file"
    done < <(find "$modules/kernel" -name '*.ko')
    while IFS= read -r file; do
        builtin["$(module_key "$(basename "$file" .ko)")"]=1
    done <"$modules/modules.builtin"
    for name in "$@"; do
        visit_module "$modules" "$name"
    done
}

# Depth first, so that each module is printed after everything it depends on.
visit_module() {
    local modules="$1" key dependency
    key="$(module_key "$2")"
    if [ -n "${seen[$key]:-}" ] || [ -n "${builtin[$key]:-}" ]; then
        return
    fi
    if [ -z "${file_of[$key]:-}" ]; then
        say "module $2 is neither built in nor shipped in $modules"
        exit 1
    fi
    seen["$key"]=1
    local dependencies
    dependencies="$(modinfo -F depends "${file_of[$key]}")" || exit 1
    for dependency in ${dependencies//,/ }; do
        visit_module "$modules" "$dependency"
    done
    printf '%s\n' "${file_of[$key]}"
}
