# The initramfs of the kernel TLS VMs: static busybox, programs with every shared library they
# load, the sample certificates, kernel modules, /init and the script /init runs.
# Sourced by scripts/ktls-test and scripts/bench after common.sh (say, repo_root), not run.

# Copies file $1 into the tree $2 at the same absolute path, following symbolic links, so that
# the run paths baked into the binaries (/opt/swift/usr/lib/swift/linux) still resolve.
copy_at_same_path() {
    local source="$1" tree="$2"
    mkdir -p "$tree$(dirname "$source")"
    cp -L "$source" "$tree$source"
}

# The absolute paths of the shared libraries ldd resolves for the programs given, the dynamic
# loader among them. An unresolved library fails the build here rather than inside the VM.
shared_libraries() {
    local listing
    listing="$(ldd "$@")"
    if grep -q 'not found' <<<"$listing"; then
        say "unresolved shared libraries:"
        grep 'not found' <<<"$listing" >&2
        exit 1
    fi
    # Lines are "name => /path (address)" or "/path (address)"; linux-vdso has no file, and
    # with several programs ldd heads each listing with "/program:".
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } NF > 1 && $1 ~ /^\// { print $1 }' \
        <<<"$listing" | sort -u
}

# Builds the initramfs tree of the kTLS checks in $1 from: the binaries folder $2, the unpacked
# kernel package $3, and the module names in the remaining arguments (loaded by /init in the
# order given here).
stage_initramfs() {
    local tree="$1" bin="$2" kernel_root="$3"
    shift 3
    stage_base "$tree" "$kernel_root" "$@"
    stage_programs "$tree" /opt/ota/bin "$bin/ota-agent" "$bin/ota-device-sim" \
        "$bin/dice-auth-verifier"
    cp "$repo_root/scripts/vm/ktls-checks.sh" "$tree/ktls-checks.sh"
    chmod 755 "$tree/ktls-checks.sh"
}

# What every VM needs, in a fresh tree $1: static busybox, /init, the helpers of the scripts it
# runs (/guest.sh), the sample certificates and the kernel modules named after the unpacked
# kernel package $2, with their load order.
stage_base() {
    local tree="$1" kernel_root="$2"
    shift 2
    local release modules module
    release="$(kernel_release "$kernel_root")"
    # Into a variable first: a failure in a process substitution would go unnoticed.
    modules="$(module_load_order "$kernel_root/lib/modules/$release" "$@")"

    rm -rf "$tree"
    mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules}
    cp "$(command -v busybox)" "$tree/bin/busybox"
    cp -r "$repo_root/firmware-sample/certs" "$tree/certs"

    : >"$tree/lib/modules/load-order"
    while IFS= read -r module; do
        cp "$module" "$tree/lib/modules/"
        printf '/lib/modules/%s\n' "$(basename "$module")" >>"$tree/lib/modules/load-order"
    done <<<"$modules"

    cp "$repo_root/scripts/vm/init" "$tree/init"
    chmod 755 "$tree/init"
    cp "$repo_root/scripts/vm/guest.sh" "$tree/guest.sh"
}

# Copies the programs (paths after $2) into folder $2 of tree $1, and every shared library they
# load at its own path.
stage_programs() {
    local tree="$1" folder="$2"
    shift 2
    local libraries library
    libraries="$(shared_libraries "$@")"
    mkdir -p "$tree$folder"
    cp "$@" "$tree$folder/"
    while IFS= read -r library; do
        copy_at_same_path "$library" "$tree"
    done <<<"$libraries"
}

# Packs the tree $1 into the uncompressed newc cpio archive $2. Uncompressed because the kernel
# unpacks it under software emulation: measured here, /init started 11.6 s after boot with the
# ~100 MiB archive and 16 s with it gzipped, which also cost 6 s to compress.
pack_initramfs() {
    local tree="$1" archive="$2"
    (cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$archive"
}
