#!/bin/sh
# Runs inside the benchmark's VM (busybox sh, as root, started by /init after the tls module is
# loaded; scripts/bench reads its console). Streams one random image to bench/reader from:
# the agent of each backend taking its kernel path (kernel TLS + sendfile), nginx with kernel TLS
# (ssl_conf_command Options KTLS, sendfile on), and, with the tls module unloaded, the OpenSSL
# agent on its pread path and nginx encrypting in user space. All servers are up together and
# the runs alternate between them, as in the benchmark's native single-stream section.
#
# Settings from the kernel command line (scripts/bench sets them): bench_mib (image size),
# bench_runs (measured runs per server), bench_backends (comma-separated: openssl, mbedtls).
# Prints, for the host to parse:
#   BENCH-VM-RUN SERVER RATE READER_BUSY SERVER_BUSY SERVER_MS_PER_MIB TX_SW_DELTA RX_SW_DELTA
#   BENCH-VM-FACT NAME VALUE
# and "not ok - ..." for anything that makes the figures untrustworthy. Exit status 0 only when
# every transfer arrived whole and every server took the path its figure is filed under.

set -u

# The helpers the VM scripts share (scripts/vm/guest.sh).
. /guest.sh

mib="${bench_mib:-32}"
runs="${bench_runs:-3}"
backends="$(echo "${bench_backends:-openssl,mbedtls}" | tr ',' ' ')"
certs=/certs
work=/tmp/bench
image="$work/image.bin"
reader=/opt/bench/reader
# Software emulation is slow: the agent's deadlines get the same room as in the kTLS checks.
deadline_scale=4
# /proc/PID/stat counts in USER_HZ, which is 100 on x86 whatever the kernel's tick.
clock_ticks=100
failures=0
verifier_pid=""
nginx_pid=""
nginx_worker=""
nginx_port=8443
sha=""

fail() {
    failures=$((failures + 1))
    echo "not ok - $*"
}

fact() {
    echo "BENCH-VM-FACT $1 $2"
}

calc() {
    awk "BEGIN { printf \"${2:-%.2f}\", ($1) }"
}

# The value of key $1 in the key=value line on stdin, or nothing.
field() {
    tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# One counter of /proc/net/tls_stat (e.g. TlsTxSw), or "absent" without the tls module.
tls_counter() {
    if [ ! -r /proc/net/tls_stat ]; then
        echo absent
        return
    fi
    awk -v name="$1" '$1 == name { print $2 }' /proc/net/tls_stat
}

# The growth of a counter from $1 to $2; 0 when the module was absent at either end (no socket
# can have had kernel TLS then).
counter_delta() {
    if [ "$1" = absent ] || [ "$2" = absent ]; then
        echo 0
        return
    fi
    echo $(($2 - $1))
}

cpu_ticks() {
    # Fields after the command name, which sits in parentheses: utime and stime are the 12th
    # and 13th of them.
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

start_verifier() {
    "/opt/ota/$1/dice-auth-verifier" --roots "$certs/roots" \
        >"$work/verifier.out" 2>"$work/verifier.log" &
    verifier_pid=$!
    line="$(wait_for_line "$work/verifier.out" '^listening ' 60)" || return 1
    verifier_port="${line##*:}"
}

# Starts the agent of backend $1 in serve mode on the image; sets agent_pid and agent_port.
start_agent() {
    NEW_FIRMWARE_PATH="$image" OTA_ALLOW_ANY_IMAGE=1 \
    DICE_AUTH_URL="http://127.0.0.1:$verifier_port/verify" \
    SERVER_CRT_PATH="$certs/agent-rsa.crt" SERVER_KEY_PATH="$certs/agent-rsa.key" \
    OTA_MODE=serve OTA_PORT=0 OTA_BIND=127.0.0.1 OTA_DEADLINE_SCALE="$deadline_scale" \
        "/opt/ota/$1/ota-agent" 2>"$work/agent-$1.log" &
    agent_pid=$!
    line="$(wait_for_line "$work/agent-$1.log" ' listening .*port=' 120)" || return 1
    agent_port="${line##*port=}"
}

# nginx's configuration, as the native benchmark runs it (one worker, the same certificate,
# suite and curves) plus kernel TLS; $1 is the events block's extra directive, if any.
write_nginx_conf() {
    cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log info;
events { worker_connections 64; $1 }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {
        listen 127.0.0.1:$nginx_port ssl;
        server_name ota-agent;
        ssl_certificate $certs/agent-rsa.crt;
        ssl_certificate_key $certs/agent-rsa.key;
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256;
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache off;
        ssl_session_tickets off;
        ssl_conf_command Options KTLS;
        root $work;
    }
}
EOF
}

# nginx's worker process, or nothing while the master has none (or several, during a reload).
nginx_child() {
    children="$(cat "/proc/$nginx_pid/task/$nginx_pid/children" 2>/dev/null)"
    # shellcheck disable=SC2086 # split into the PIDs
    set -- $children
    [ "$#" -eq 1 ] && echo "$1"
}

# Waits until nginx's master has one worker other than $1; sets nginx_worker.
wait_for_worker() {
    tries=300
    nginx_worker=""
    until [ -n "$nginx_worker" ] && [ "$nginx_worker" != "$1" ]; do
        tries=$((tries - 1))
        if [ "$tries" -le 0 ] || ! kill -0 "$nginx_pid" 2>/dev/null; then
            cat "$work/nginx/stderr.log" "$work/nginx/error.log" 2>/dev/null
            return 1
        fi
        sleep 0.2
        nginx_worker="$(nginx_child)"
    done
}

# Starts nginx with every connection logged at debug level, for the warm-up: its log then shows
# whether nginx handed the keys to the kernel and used SSL_sendfile. (On loopback the client's
# address is always 127.0.0.1, so debug_connection cannot single out one connection.)
start_nginx() {
    mkdir -p "$work/nginx/tmp"
    write_nginx_conf "debug_connection 127.0.0.1;"
    nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr.log" &
    nginx_pid=$!
    wait_for_worker ""
}

# After the warm-up: the measured runs log nothing per connection, like the native run's.
quiet_nginx() {
    old_worker="$nginx_worker"
    write_nginx_conf ""
    kill -HUP "$nginx_pid"
    wait_for_worker "$old_worker"
}

reader_mode() {
    case "$1" in
    nginx*) echo "--http /image.bin" ;;
    *) echo "--agent $certs/device.der" ;;
    esac
}

# One reader run against server $1 (label) on port $2, server process $3: prints the
# BENCH-VM-RUN line, after checking the SHA-256.
read_once() {
    server="$1" port="$2" pid="$3"
    tx_before="$(tls_counter TlsTxSw)" rx_before="$(tls_counter TlsRxSw)"
    cpu_before="$(cpu_ticks "$pid")"
    # shellcheck disable=SC2046 # the mode is two words on purpose
    line="$("$reader" --port "$port" --ca "$certs/agent-rsa.crt" $(reader_mode "$server"))"
    cpu_after="$(cpu_ticks "$pid")"
    tx_after="$(tls_counter TlsTxSw)" rx_after="$(tls_counter TlsRxSw)"
    if [ "$(echo "$line" | field sha256)" != "$sha" ]; then
        fail "$server: the reader got the whole image (got: $line)"
        return
    fi
    bytes="$(echo "$line" | field bytes)"
    seconds="$(echo "$line" | field seconds)"
    reader_cpu="$(echo "$line" | field cpu_seconds)"
    echo "BENCH-VM-RUN $server $(calc "$bytes / 1048576 / $seconds" %.1f)" \
        "$(calc "$reader_cpu / $seconds")" \
        "$(calc "($cpu_after - $cpu_before) / $clock_ticks / $seconds")" \
        "$(calc "($cpu_after - $cpu_before) / $clock_ticks * 1000 / ($bytes / 1048576)")" \
        "$(counter_delta "$tx_before" "$tx_after")" "$(counter_delta "$rx_before" "$rx_after")"
}

# Unloads the tls module so that the next runs encrypt in user space. It goes once the last
# socket that used it is gone, which may be a moment after a transfer.
unload_tls() {
    tries=100
    until rmmod tls 2>"$work/rmmod.err"; do
        tries=$((tries - 1))
        if [ "$tries" -le 0 ]; then
            fail "rmmod tls: $(cat "$work/rmmod.err")"
            return 1
        fi
        sleep 0.1
    done
}

# The agent looks for the module at most every 100 ms (ota_kernel_tls_module_loaded): the
# pause lets it see the module before the next kernel-path run.
load_tls() {
    insmod "$(grep '/tls\.ko$' /lib/modules/load-order)" || fail "insmod tls"
    sleep 0.3
}

# How many of the agent's transfers (log of backend $1) ended updated through path $2.
path_count() {
    grep ' session-end ' "$work/agent-$1.log" | grep ' outcome=updated ' |
        grep -c " path=$2 "
}

main() {
    mkdir -p "$work"
    fact cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo | tr ' ' '_')"
    fact kernel "$(uname -r)"
    if [ ! -r /proc/net/tls_stat ]; then
        fail "tls module loaded (/proc/net/tls_stat exists)"
        return 1
    fi

    started="$(awk '{ print $1 }' /proc/uptime)"
    head -c $((mib * 1024 * 1024)) /dev/urandom >"$image"
    sha="$(sha256sum "$image" | cut -d ' ' -f 1)"
    fact image_setup_s "$(calc "$(awk '{ print $1 }' /proc/uptime) - $started" %.1f)"

    first=""
    for backend in $backends; do first="${first:-$backend}"; done
    start_verifier "$first" || { fail "dice-auth-verifier is listening"; return 1; }
    servers=""
    for backend in $backends; do
        if ! start_agent "$backend"; then
            fail "the $backend agent is listening"
            cat "$work/agent-$backend.log"
            return 1
        fi
        eval "port_$backend=$agent_port pid_$backend=$agent_pid"
        servers="$servers $backend"
    done
    start_nginx || { fail "nginx is listening"; return 1; }
    fact servers_ready_s "$(calc "$(awk '{ print $1 }' /proc/uptime) - $started" %.1f)"

    # One unmeasured transfer per server, so no run pays for first-use costs; nginx's at debug
    # level.
    for backend in $backends; do
        eval "port=\$port_$backend"
        "$reader" --port "$port" --ca "$certs/agent-rsa.crt" --agent "$certs/device.der" \
            >/dev/null || fail "$backend: warm-up transfer"
    done
    "$reader" --port "$nginx_port" --ca "$certs/agent-rsa.crt" --http /image.bin \
        >/dev/null || fail "nginx: warm-up transfer"
    quiet_nginx || { fail "nginx reloads its configuration"; return 1; }

    run=1
    while [ "$run" -le "$runs" ]; do
        for backend in $backends; do
            eval "read_once $backend-ktls \$port_$backend \$pid_$backend"
        done
        read_once nginx-ktls "$nginx_port" "$nginx_worker"
        # The same processes, without kernel TLS: the agent falls back to pread, as on a
        # machine without the module, and nginx encrypts in user space as it does natively.
        if unload_tls; then
            case " $backends " in
            *" openssl "*) read_once openssl-pread "$port_openssl" "$pid_openssl" ;;
            esac
            read_once nginx-userspace "$nginx_port" "$nginx_worker"
            load_tls
        fi
        run=$((run + 1))
    done
    fact measured_s "$(calc "$(awk '{ print $1 }' /proc/uptime) - $started" %.1f)"

    # What each server did, by its own account.
    for backend in $backends; do
        fact "${backend}_agent_ktls_sendfile_transfers" "$(path_count "$backend" ktls-sendfile)"
        fact "${backend}_agent_pread_transfers" "$(path_count "$backend" pread)"
    done
    fact nginx_debug_ktls_send_lines "$(grep -c 'BIO_get_ktls_send(): 1' "$work/nginx/error.log")"
    fact nginx_debug_ssl_sendfile_lines "$(grep -c 'SSL_sendfile: ' "$work/nginx/error.log")"
    grep -m 1 -e 'BIO_get_ktls_send' "$work/nginx/error.log" | sed 's/^/# nginx: /'
    grep -m 1 -e 'SSL_sendfile: ' "$work/nginx/error.log" | sed 's/^/# nginx: /'
    echo "# /proc/net/tls_stat at the end:"
    sed 's/^/#   /' /proc/net/tls_stat

    kill -TERM "$nginx_pid" "$verifier_pid" 2>/dev/null
    for backend in $backends; do
        eval "kill -TERM \$pid_$backend" 2>/dev/null
    done
    wait
    fact failures "$failures"
    [ "$failures" -eq 0 ]
}

main "$@"
