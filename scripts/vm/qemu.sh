# Boots the kernel TLS VMs and reads their verdict from the console.
# Sourced by scripts/ktls-test and scripts/bench after common.sh (say, as_root), not run.

# Debian packages for the VM, on top of common.sh's list for the build.
vm_packages=(qemu-system-x86 busybox-static cpio kmod)

# Like common.sh's install_packages, for the VM's list, and without recommended packages:
# qemu-system-x86 would otherwise bring a whole graphical stack the VM never uses.
install_vm_packages() {
    local missing=() package
    for package in "${vm_packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"
        then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# Exit status of ktls-test when the VM never printed its verdict: it did not boot, /init
# failed, the kernel panicked, or the time ran out.
readonly vm_failed_status=3

# Boots kernel $1 with initramfs $2 under software emulation, at most $4 seconds, streaming the
# console to stdout and into file $3, without the serial line's carriage returns and the
# firmware's terminal escapes (one of them resets the reader's terminal). $5, when given, adds
# to the kernel command line (name=value words reach /init as variables).
# Loopback only: -nic none removes the network card QEMU would otherwise add by default.
boot_vm() {
    local kernel="$1" initramfs="$2" console="$3" limit="$4" extra="${5:-}"
    local qemu_status
    # KVM does not boot on this workplace's machines; TCG is slow but works everywhere.
    # panic=-1 reboots at once on a panic, and -no-reboot turns that reboot into an exit.
    set +e
    timeout --kill-after=10 "$limit" qemu-system-x86_64 \
        -accel tcg -m 2048 -smp 2 \
        -nographic -no-reboot -nic none \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "console=ttyS0 quiet panic=-1${extra:+ $extra}" </dev/null 2>&1 |
        sed -u 's/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$console"
    qemu_status="${PIPESTATUS[0]}"
    set -e
    if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
        say "the VM did not finish within $limit s"
    elif [ "$qemu_status" -ne 0 ]; then
        say "qemu-system-x86_64 exited with status $qemu_status"
    fi
}

# The VM script's exit status from the console log $1, or nothing when the VM never said.
vm_verdict() {
    grep -o 'VM-SCRIPT rc=[0-9]*' "$1" | tail -n 1 | sed 's/.*rc=//' || true
}
