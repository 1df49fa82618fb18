# Helpers for the scripts that run inside the kernel TLS VMs (ktls-checks.sh, bench-stream.sh),
# sourced by them as /guest.sh (busybox sh). Staged by stage_base in initramfs.sh.

# Prints the first line of file $1 matching pattern $2, waiting up to $3 seconds for it.
wait_for_line() {
    local tries=$(($3 * 10))
    while [ "$tries" -gt 0 ]; do
        if grep -m 1 -e "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

# Waits up to $4 seconds until file $1 has at least $3 lines matching pattern $2; false if not.
wait_for_count() {
    local tries=$(($4 * 10))
    while [ "$(grep -c -e "$2" "$1" 2>/dev/null)" -lt "$3" ]; do
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
        tries=$((tries - 1))
    done
}
