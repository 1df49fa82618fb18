#!/bin/sh
# Runs inside the kTLS test VM (busybox sh, as root, started by /init after the tls module is
# loaded). For each image size that matters to kernel TLS (one byte, whole 16 KiB records, one
# byte past them, a few MiB, more than 64 MiB) it starts an agent serving that image, lets one
# simulated device fetch it, and checks the device's result and the agent's session-end line:
# outcome=updated and the streaming path (path=ktls-sendfile where the backend has it). Then
# the two fallbacks to path=pread: a device asking for small records, and no tls module at all.
# Prints "ok - ..." / "not ok - ..." per check, then "N passed, M failed, K skipped".
# Exit status: 0 only when every check passed.

# No `set -e`: a failed check is counted and the next one still runs.
set -u

# The helpers the VM scripts share (scripts/vm/guest.sh).
. /guest.sh

# The three programs; /init puts them on PATH too, but the script should not depend on that.
export PATH="/opt/ota/bin:$PATH"
certs=/certs
work=/tmp/ktls
record=16384
# The sizes, in bytes. The last one must stay above 64 MiB.
sizes="1 $record $((3 * record)) $((3 * record + 1)) $((5 * 1024 * 1024 + 7)) $((70 * 1024 * 1024))"
# Software emulation is slow: give the agent's deadlines and the device's patience room.
deadline_scale=4
device_timeout_ms=480000

passed=0
failed=0
skipped=0
verifier_pid=""
verifier_port=""
agent_pid=""
agent_port=""
agent_status=0

ok() {
    passed=$((passed + 1))
    echo "ok - $*"
}

not_ok() {
    failed=$((failed + 1))
    echo "not ok - $*"
}

skip() {
    skipped=$((skipped + 1))
    echo "ok - $1 # SKIP $2"
}

# Shows a file's lines as TAP comments, for the reader of a failure.
show() {
    echo "# --- $1"
    sed 's/^/#   /' "$1" 2>/dev/null
}

# Milliseconds since boot, good enough to time a transfer.
now_ms() {
    awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
}

# The value of key $2 in the key=value log line $1, or nothing.
field() {
    printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# One counter of /proc/net/tls_stat, e.g. TlsTxSw.
tls_counter() {
    awk -v name="$1" '$1 == name { print $2 }' /proc/net/tls_stat
}

start_verifier() {
    dice-auth-verifier --roots "$certs/roots" >"$work/verifier.out" 2>"$work/verifier.log" &
    verifier_pid=$!
    local line
    if ! line="$(wait_for_line "$work/verifier.out" '^listening ' 60)"; then
        not_ok "dice-auth-verifier is listening"
        show "$work/verifier.log"
        return 1
    fi
    verifier_port="${line##*:}"
    ok "dice-auth-verifier is listening on port $verifier_port"
}

# Starts an agent in serve mode for image $1, logging to $2; sets agent_pid and agent_port.
# The images are random bytes of chosen sizes, not ESP-IDF app images: OTA_ALLOW_ANY_IMAGE.
start_agent() {
    NEW_FIRMWARE_PATH="$1" OTA_ALLOW_ANY_IMAGE=1 \
    DICE_AUTH_URL="http://127.0.0.1:$verifier_port/verify" \
    SERVER_CRT_PATH="$certs/agent-rsa.crt" SERVER_KEY_PATH="$certs/agent-rsa.key" \
    OTA_MODE=serve OTA_PORT=0 OTA_BIND=127.0.0.1 OTA_DEADLINE_SCALE="$deadline_scale" \
        ota-agent 2>"$2" &
    agent_pid=$!
    local line
    line="$(wait_for_line "$2" ' listening .*port=' 60)" || return 1
    agent_port="${line##*port=}"
}

# Stops the agent with SIGTERM (serve mode drains and exits 0); sets agent_status.
# Not in a command substitution: only this shell can wait for its child.
stop_agent() {
    agent_status=0
    kill -TERM "$agent_pid" 2>/dev/null
    wait "$agent_pid" || agent_status=$?
    agent_pid=""
}

# One agent serving an image of $1 bytes, one device (extra simulator options after $4): checks
# the device's result, and the agent's session-end outcome and streaming path ($3), then stops
# the agent. $2 labels the checks; the files of the case are $work/<$4>.*.
transfer_case() {
    local size="$1" label="$2" want_path="$3" name="$4"
    shift 4
    local image="$work/$name.bin" log="$work/$name.agent.log"
    local device_out="$work/$name.device.out" device_err="$work/$name.device.err"
    local sha started elapsed device_status=0 line outcome path

    head -c "$size" /dev/urandom >"$image"
    sha="$(sha256sum "$image" | cut -d ' ' -f 1)"
    if ! start_agent "$image" "$log"; then
        not_ok "$label: agent is listening"
        show "$log"
        kill -KILL "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
        agent_pid=""
        rm -f "$image"
        return
    fi

    started="$(now_ms)"
    ota-device-sim --host 127.0.0.1 --port "$agent_port" --ca "$certs/agent-rsa.crt" \
        --cert "$certs/device.der" --read-size "$record" --expect-sha256 "$sha" \
        --timeout-ms "$device_timeout_ms" --quiet "$@" >"$device_out" 2>"$device_err" ||
        device_status=$?
    elapsed=$(($(now_ms) - started))
    if [ "$device_status" -eq 0 ] && grep -q ' outcome=updated ' "$device_out"; then
        ok "$label: device updated, sha256 matches ($elapsed ms)"
    else
        not_ok "$label: device updated (exit $device_status, $elapsed ms)"
        show "$device_out"
        show "$device_err"
    fi

    # The agent logs session-end once the device has confirmed, a moment after it exits.
    line="$(wait_for_line "$log" ' session-end ' 30)"
    outcome="$(field "$line" outcome)"
    path="$(field "$line" path)"
    if [ "$outcome" = updated ]; then
        ok "$label: agent session-end outcome=updated"
    else
        not_ok "$label: agent session-end outcome=updated (got '${outcome:-no session-end}')"
        show "$log"
    fi
    if [ "$path" = "$want_path" ]; then
        ok "$label: agent path=$want_path"
    else
        not_ok "$label: agent path=$want_path (got path='$path')"
    fi

    stop_agent
    if [ "$agent_status" -eq 0 ]; then
        ok "$label: agent exits 0 on SIGTERM"
    else
        not_ok "$label: agent exits 0 on SIGTERM (got $agent_status)"
        show "$log"
    fi
    rm -f "$image"
}

# TlsTxSw counts the sockets whose sending side the kernel encrypted: it must grow by at least
# $4 from $2 to $3.
check_tx_grew() {
    if [ "$3" -ge $(($2 + $4)) ]; then
        ok "$1 (TlsTxSw $2 -> $3)"
    else
        not_ok "$1 (TlsTxSw $2 -> $3)"
    fi
}

# ... or stay as it was.
check_tx_unchanged() {
    if [ "$3" -eq "$2" ]; then
        ok "$1 (TlsTxSw $2 -> $3)"
    else
        not_ok "$1 (TlsTxSw $2 -> $3)"
    fi
}

# The transfers of every size, each through its own agent.
sized_transfers() {
    local size before after transfers=0
    before="$(tls_counter TlsTxSw)"
    for size in $sizes; do
        transfer_case "$size" "$size B" "$expected_path" "image-$size"
        transfers=$((transfers + 1))
    done
    after="$(tls_counter TlsTxSw)"
    echo "# /proc/net/tls_stat after the transfers:"
    sed 's/^/#   /' /proc/net/tls_stat
    if [ "$expect_ktls" = yes ]; then
        check_tx_grew "kernel encrypted each of the $transfers transfers" \
            "$before" "$after" "$transfers"
    else
        check_tx_unchanged "kernel encrypted none of the transfers" "$before" "$after"
    fi
}

# One agent, several devices one after another: every connection of a long-running agent must
# take the kernel path, not only its first (the agent remembers what it found about the tls
# module, and must not remember wrongly).
consecutive_devices() {
    local devices=4 size=$((2 * record + 3)) label="one agent, devices one after another"
    local image="$work/consecutive.bin" log="$work/consecutive.agent.log" sha before after
    local index updated=0 kernel_paths
    head -c "$size" /dev/urandom >"$image"
    sha="$(sha256sum "$image" | cut -d ' ' -f 1)"
    if ! start_agent "$image" "$log"; then
        not_ok "$label: agent is listening"
        show "$log"
        return
    fi

    before="$(tls_counter TlsTxSw)"
    for index in $(seq "$devices"); do
        if ota-device-sim --host 127.0.0.1 --port "$agent_port" --ca "$certs/agent-rsa.crt" \
            --cert "$certs/device.der" --expect-sha256 "$sha" \
            --timeout-ms "$device_timeout_ms" --quiet >"$work/consecutive.$index.out" 2>&1; then
            updated=$((updated + 1))
        fi
    done
    # The agent logs session-end a moment after each device exits.
    wait_for_count "$log" ' session-end ' "$devices" 30
    after="$(tls_counter TlsTxSw)"
    kernel_paths="$(grep ' session-end ' "$log" | grep -c " path=$expected_path ")"
    stop_agent
    rm -f "$image"

    if [ "$updated" -eq "$devices" ]; then
        ok "$label: all $devices devices updated, sha256 matches"
    else
        not_ok "$label: all $devices devices updated (got $updated)"
    fi
    if [ "$kernel_paths" -eq "$devices" ]; then
        ok "$label: path=$expected_path for each of the $devices"
    else
        not_ok "$label: path=$expected_path for each of the $devices (got $kernel_paths)"
        show "$log"
    fi
    if [ "$expect_ktls" = yes ]; then
        check_tx_grew "$label: kernel encrypted each transfer" "$before" "$after" "$devices"
    fi
}

# A device that asks for 1 KiB records (RFC 6066) must get them, which kernel TLS cannot send:
# the agent falls back to pread, and the kernel encrypts nothing for it. Not 512: the device's
# mbedTLS 2.28 cannot take a handshake message split over records, and the agent's certificate
# message is longer than 512 bytes.
small_fragment_transfer() {
    local fragment=1024 size=$((3 * record + 1)) label before after max_read
    label="$fragment-byte max_fragment_length"
    if ! ota-device-sim --help 2>&1 | grep -q -e '--max-fragment-length'; then
        skip "$label: path=pread" "ota-device-sim cannot negotiate max_fragment_length yet"
        return
    fi
    before="$(tls_counter TlsTxSw)"
    transfer_case "$size" "$label" pread small-fragment --max-fragment-length "$fragment"
    after="$(tls_counter TlsTxSw)"
    check_tx_unchanged "$label: kernel encrypted nothing" "$before" "$after"
    # max_read: the largest single read, so the largest record, as the device saw it.
    max_read="$(field "$(cat "$work/small-fragment.device.out")" max_read)"
    if [ "${max_read:-0}" -gt 0 ] && [ "$max_read" -le "$fragment" ]; then
        ok "$label: records of at most $fragment bytes arrived (max_read=$max_read)"
    else
        not_ok "$label: records of at most $fragment bytes arrived (max_read=${max_read:-?})"
    fi
}

# With no tls module the agent must fall back to pread. It can go now that no socket uses it,
# and stays gone: the kernel's on-demand load finds no module tree for modprobe in this VM.
no_tls_module_transfer() {
    local label="without the tls module"
    if ! rmmod tls 2>"$work/rmmod.err"; then
        skip "$label: path=pread" "rmmod tls failed: $(cat "$work/rmmod.err")"
        return
    fi
    if [ -e /proc/net/tls_stat ]; then
        not_ok "$label: /proc/net/tls_stat is gone after rmmod"
        return
    fi
    transfer_case $((3 * record + 1)) "$label" pread no-tls-module
}

main() {
    mkdir -p "$work"
    local version backend

    version="$(ota-agent --version)"
    echo "# $version"
    case "$version" in
    *"(openssl:"*) backend=openssl ;;
    *"(mbedtls:"*) backend=mbedtls ;;
    *) backend=unknown ;;
    esac
    # The one place that says which backend streams through the kernel: both do (OpenSSL by
    # itself, mbedTLS by handing its transmit keys over after the handshake).
    if [ "$backend" = openssl ] || [ "$backend" = mbedtls ]; then
        expect_ktls=yes
        expected_path=ktls-sendfile
    else
        expect_ktls=no
        expected_path=pread
        echo "# note: unknown backend; expecting path=pread"
    fi

    if [ -r /proc/net/tls_stat ]; then
        ok "tls module loaded (/proc/net/tls_stat exists)"
        echo "# /proc/net/tls_stat before the transfers:"
        sed 's/^/#   /' /proc/net/tls_stat
        if start_verifier; then
            sized_transfers
            consecutive_devices
            small_fragment_transfer
            no_tls_module_transfer
        fi
    else
        not_ok "tls module loaded (/proc/net/tls_stat exists)"
    fi

    [ -n "$verifier_pid" ] && kill -TERM "$verifier_pid" 2>/dev/null
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

main "$@"
