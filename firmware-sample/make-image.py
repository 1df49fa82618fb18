#!/usr/bin/env python3
"""Writes a deterministic ESP-IDF application image for the ESP32 (run by make-image.sh).

The layout is the one ESP-IDF's build writes (and the agent checks, CSources/OTACore/app_image.c):
a 24-byte header with the extended header, segments of 8-byte headers and data, zero padding to
the last byte of a 16-byte block holding the checksum (0xEF XOR all segment data), then the
SHA-256 of everything before it. The first segment, mapped from flash as read-only data, starts
with the application description (esp_app_desc_t) naming the project ota-agent-sample.

It is not a program: the segments hold pseudo-random bytes (SHA-256 in counter mode over a fixed
seed), so the same file comes out on every run and it compresses like real firmware. No ESP-IDF
is involved, so the description's IDF version says so.

Python 3 standard library only.
"""

import argparse
import hashlib
import struct

CHIP_ID_ESP32 = 0
MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
APP_DESC_MAGIC = 0xABCD5432
FLASH_PAGE = 0x10000  # flash-mapped segments sit at file offset = load address, modulo 64 KiB

PROJECT = b"ota-agent-sample"
VERSION = b"1.0.0"
IDF_VERSION = b"none (make-image.sh)"
COMPILE_TIME = b"00:00:00"
COMPILE_DATE = b"Jan  1 2026"


def stream(label, length):
    """`length` pseudo-random bytes, the same for the same label on every run."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(b"ota-agent sample " + label + struct.pack("<I", counter)).digest()
        counter += 1
    return bytes(out[:length])


def fixed(text, length):
    """A C char array: the text, NUL-padded."""
    assert len(text) < length
    return text + bytes(length - len(text))


def app_description():
    """esp_app_desc_t, 256 bytes."""
    desc = struct.pack("<II8x", APP_DESC_MAGIC, 0)  # magic, secure_version, reserved
    desc += fixed(VERSION, 32) + fixed(PROJECT, 32)
    desc += fixed(COMPILE_TIME, 16) + fixed(COMPILE_DATE, 16) + fixed(IDF_VERSION, 32)
    desc += hashlib.sha256(b"ota-agent sample ELF").digest()  # app_elf_sha256
    desc += struct.pack("<HHB3x", 0, 0, 0)  # eFuse block revisions, MMU page size (default)
    desc += bytes(4 * 18)  # reserved
    assert len(desc) == 256
    return desc


def header(segment_count, entry_point, hash_appended):
    """The common header (8 bytes) and the extended header (16 bytes)."""
    spi_mode = 2  # DIO
    spi_size_speed = 0x20 | 0x0  # 4 MB, 40 MHz
    common = struct.pack("<BBBBI", MAGIC, segment_count, spi_mode, spi_size_speed, entry_point)
    wp_pin = 0xEE  # not used
    extended = struct.pack("<B3xHBHH4xB", wp_pin, CHIP_ID_ESP32, 0, 0, 399, hash_appended)
    return common + extended


def image():
    drom = app_description() + stream(b"drom", 0x8000 - 256)
    ram = [(0x3FFB0000, stream(b"dram", 0x2000)), (0x40080000, stream(b"iram", 0x6000))]
    irom = (0x400D0020, stream(b"irom", 0x30000))
    segments = [(0x3F400020, drom)] + ram

    # A padding segment (load address 0, ignored by the bootloader) so that the IROM segment's
    # data lands at a file offset equal to its load address modulo the flash page.
    offset = 24 + sum(8 + len(data) for _, data in segments)
    padding = (irom[0] - (offset + 16)) % FLASH_PAGE
    segments += [(0, bytes(padding)), irom]

    body = bytearray(header(len(segments), 0x40080400, 1))
    checksum = CHECKSUM_SEED
    for address, data in segments:
        assert len(data) % 4 == 0
        body += struct.pack("<II", address, len(data)) + data
        for byte in data:
            checksum ^= byte
    body += bytes(15 - len(body) % 16) + bytes([checksum])
    body += hashlib.sha256(body).digest()
    return bytes(body)


def main():
    parser = argparse.ArgumentParser(
        prog="make-image.py",
        description="Writes the deterministic sample ESP-IDF application image for the ESP32 "
        "(the bytes of firmware-sample/sample-firmware.bin) to OUTPUT. make-image.sh runs it.",
        epilog="Unknown options are an error (exit 2); a file name beginning with '-' goes after '--'.",
    )
    parser.add_argument("output", metavar="OUTPUT", help="the file to write (replaced if it exists)")
    arguments = parser.parse_args()
    with open(arguments.output, "wb") as output:
        output.write(image())


if __name__ == "__main__":
    main()
