#!/usr/bin/env bash
# Recreates the demo key material of ota-agent in firmware-sample/certs/.
#
#   agent-rsa.crt/.key     the agent's TLS server certificate, RSA-2048, self-signed
#   agent-ec.crt/.key      the same on ECDSA P-256
#   dice-root.crt/.key     a DICE-style root CA that the verifier trusts
#   device.der/.crt/.key   a device certificate under dice-root (esp32-device-0001)
#   device-2.der/.crt/.key a second device under dice-root (esp32-device-0002)
#   rogue-root.crt/.key    a root that nobody trusts
#   rogue-device.der/.crt/.key  a device under rogue-root (esp32-device-rogue)
#   roots/dice-root.crt    the folder of trusted roots that dice-auth-verifier loads
#
# The file names are fixed; the keys and serial numbers are new on every run.
# These keys are published with the source: never deploy them.
#
# Needs only the openssl command line tool (OpenSSL 3.0) and coreutils.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="$script_dir/certs"
validity_days=7305 # 20 years, leap days included

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# Our own configuration, so that the system's openssl.cnf defaults (which add CA extensions to
# every `req -x509`) cannot change what we produce.
config="$work_dir/openssl.cnf"
cat >"$config" <<'EOF'
[req]
distinguished_name = req_distinguished_name
prompt = no

[req_distinguished_name]

# The agent's certificate is pinned by the fleet: the device trusts exactly this certificate,
# so it is an end-entity certificate for a TLS server, not a CA.
[agent_rsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:ota-agent
subjectKeyIdentifier = hash

[agent_ec]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:ota-agent
subjectKeyIdentifier = hash

[dice_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

# Open DICE certificates are CA certificates (each layer certifies the next one), carry
# keyUsage keyCertSign only, and put the measured DICE inputs into a critical extension
# (OID 1.3.6.1.4.1.11129.2.1.24) that generic X.509 stacks do not know.
[dice_device]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
1.3.6.1.4.1.11129.2.1.24 = critical, ASN1:SEQUENCE:dice_inputs

# A made-up but well-formed DICE input: code hash [0], authority hash [4], mode [6] (1 = normal).
[dice_inputs]
code_hash = EXP:0, FORMAT:HEX, OCTETSTRING:${ENV::DICE_CODE_HASH}
authority_hash = EXP:4, FORMAT:HEX, OCTETSTRING:${ENV::DICE_AUTHORITY_HASH}
mode = EXP:6, ENUMERATED:1
EOF

# The DICE hashes are derived from fixed strings so that they stay the same from run to run.
sha512_hex() {
    printf '%s' "$1" | openssl dgst -sha512 -r | cut -d' ' -f1
}
export DICE_CODE_HASH DICE_AUTHORITY_HASH
DICE_CODE_HASH="$(sha512_hex 'ota-agent demo firmware')"
DICE_AUTHORITY_HASH="$(sha512_hex 'ota-agent demo signing authority')"

quietly() { # runs a command, showing its chatter on stderr (progress dots, notes) only on failure
    if ! "$@" 2>"$work_dir/stderr"; then
        cat "$work_dir/stderr" >&2
        return 1
    fi
}

new_key() { # new_key TYPE FILE; the umask keeps private keys at mode 0600 from their creation on
    local key_type="$1" key_file="$2" algorithm_options
    case "$key_type" in
        rsa) algorithm_options=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
        ec) algorithm_options=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
    esac
    (umask 077 && quietly openssl genpkey "${algorithm_options[@]}" -out "$key_file")
    chmod 0600 "$key_file" # in case an older file of that name had wider permissions
}

random_serial() { # a positive serial number of 16 random bytes (RFC 5280 allows up to 20)
    printf '0x7%s' "$(openssl rand -hex 15)"
}

self_signed() { # self_signed NAME KEYTYPE SUBJECT EXTENSIONS
    local name="$1" key_type="$2" subject="$3" extensions="$4"
    new_key "$key_type" "$out_dir/$name.key"
    openssl req -new -x509 -config "$config" -extensions "$extensions" \
        -key "$out_dir/$name.key" -subj "$subject" -days "$validity_days" \
        -set_serial "$(random_serial)" -sha256 -out "$out_dir/$name.crt"
}

device() { # device NAME ROOT SUBJECT: writes NAME.key, NAME.der and its PEM copy NAME.crt
    local name="$1" root="$2" subject="$3"
    new_key ec "$out_dir/$name.key"
    openssl req -new -config "$config" -key "$out_dir/$name.key" -subj "$subject" \
        -out "$work_dir/$name.csr"
    quietly openssl x509 -req -in "$work_dir/$name.csr" \
        -CA "$out_dir/$root.crt" -CAkey "$out_dir/$root.key" \
        -extfile "$config" -extensions dice_device -days "$validity_days" \
        -set_serial "$(random_serial)" -sha256 -outform DER -out "$out_dir/$name.der"
    openssl x509 -inform DER -in "$out_dir/$name.der" -out "$out_dir/$name.crt"
}

rm -rf "$out_dir"
mkdir -p "$out_dir/roots"

self_signed agent-rsa rsa "/CN=ota-agent" agent_rsa
self_signed agent-ec ec "/CN=ota-agent" agent_ec

fleet="ota-agent demo fleet"
self_signed dice-root ec "/CN=DICE Root CA/O=$fleet" dice_root
device device dice-root "/CN=esp32-device-0001/O=$fleet"
device device-2 dice-root "/CN=esp32-device-0002/O=$fleet"

self_signed rogue-root ec "/CN=Rogue DICE Root CA/O=not the ota-agent fleet" dice_root
device rogue-device rogue-root "/CN=esp32-device-rogue/O=$fleet"

cp "$out_dir/dice-root.crt" "$out_dir/roots/dice-root.crt"

# The https Dice-Auth test set lives in certs/dice-auth/, which the rm above removed.
bash "$script_dir/make-dice-auth-certs.sh"

echo "wrote $(find "$out_dir" -type f | wc -l) files to $out_dir"
