# syntax=docker/dockerfile:1
#
# ota-agent on Debian 12 (slim): the static release build, whose Swift runtime and Foundation
# are inside the binary, so the image holds only Debian's curl and TLS libraries. Build the
# binary on a machine with Swift, then the image from the repository root:
#
#   scripts/release-build                        # writes dist/openssl/ota-agent
#   docker build -t ota-agent .
#   scripts/release-build --traits MbedTLS       # writes dist/mbedtls/ota-agent
#   docker build --build-arg BACKEND=mbedtls -t ota-agent:mbedtls .
#
# Configured as today's deployments are, by four variables: NEW_FIRMWARE_PATH, DICE_AUTH_URL,
# SERVER_CRT_PATH and SERVER_KEY_PATH (the paths default to the mounts below; DICE_AUTH_URL
# has no default and must be set). Devices connect to port 4433.
#
#   docker run --rm -p 4433:4433 -e DICE_AUTH_URL=https://dice-auth.example/verify \
#       -v "$PWD/firmware.bin:/var/lib/ota-agent/firmware/firmware.bin:ro" \
#       -v "$PWD/tls:/etc/ota-agent/tls:ro" ota-agent
#
# The agent runs as uid 10001 (gid 10001): every mounted file (image, certificate, key) and
# its folders must be readable by that user. A key as it usually is on a host, mode 600 and
# owned by root or by you, is not: the agent then exits 2 with "Permission denied". Either
# give the key to uid 10001 (sudo chown 10001:10001 tls/tls.key; chmod 600 tls/tls.key), or
# run as the key's owner (docker run --user "$(id -u):$(id -g)" ... for a key of your own).
#
# On docker stop the agent stops accepting and gives transfers in flight a 60 s grace period
# (OTA_GRACE_PERIOD) and up to 30 s more; docker stop waits only 10 s by default before
# SIGKILL, cutting transfers off. Give it longer:
#
#   docker run --stop-timeout 120 ...     or     docker stop --time 120 <container>

FROM debian:12-slim

ARG BACKEND=openssl

RUN set -eu; \
    case "$BACKEND" in \
        openssl) tls_packages="libssl3" ;; \
        mbedtls) tls_packages="libmbedtls14 libmbedx509-1 libmbedcrypto7" ;; \
        *) echo "BACKEND must be openssl or mbedtls (got $BACKEND)" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        ca-certificates libcurl4 libstdc++6 libgcc-s1 $tls_packages; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 ota-agent; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ota-agent

COPY --chmod=755 dist/${BACKEND}/ota-agent /usr/local/bin/ota-agent

ENV NEW_FIRMWARE_PATH=/var/lib/ota-agent/firmware/firmware.bin \
    SERVER_CRT_PATH=/etc/ota-agent/tls/tls.crt \
    SERVER_KEY_PATH=/etc/ota-agent/tls/tls.key

EXPOSE 4433

USER 10001:10001

# Docker's default, said explicitly: SIGTERM starts the graceful stop (a second one cuts it short).
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/ota-agent"]
