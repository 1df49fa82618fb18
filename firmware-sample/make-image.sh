#!/usr/bin/env bash
# Writes firmware-sample/sample-firmware.bin: 300000 pseudo-random bytes, the same on every run
# (AES-128-CTR keystream under a fixed key and IV), so tests can compare digests across runs.
#
# Needs only the openssl command line tool and coreutils.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="$script_dir/sample-firmware.bin"
image_size=300000

# Encrypting zeros in counter mode yields the keystream itself: deterministic, incompressible.
# head closes the pipe early, so openssl may die of SIGPIPE; only head's status matters here.
set +o pipefail
openssl enc -aes-128-ctr -nosalt \
    -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 \
    -in /dev/zero 2>/dev/null | head -c "$image_size" >"$image.tmp"
set -o pipefail

actual_size="$(wc -c <"$image.tmp")"
if [ "$actual_size" -ne "$image_size" ]; then
    rm -f "$image.tmp"
    echo "make-image.sh: produced $actual_size bytes instead of $image_size" >&2
    exit 1
fi
mv "$image.tmp" "$image"
echo "wrote $image ($image_size bytes, sha256 $(sha256sum "$image" | cut -d' ' -f1))"
