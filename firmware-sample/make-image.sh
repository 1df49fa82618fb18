#!/usr/bin/env bash
# Writes firmware-sample/sample-firmware.bin: a valid ESP-IDF application image for the ESP32
# (project ota-agent-sample, version 1.0.0, five segments, checksum and appended SHA-256), the
# same bytes on every run, so tests can compare digests across runs. make-image.py says how.
#
# Needs python3 (standard library only) and coreutils.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="$script_dir/sample-firmware.bin"

python3 "$script_dir/make-image.py" "$image.tmp"
mv "$image.tmp" "$image"
echo "wrote $image ($(wc -c <"$image") bytes, sha256 $(sha256sum "$image" | cut -d' ' -f1))"
