#!/usr/bin/env bash
# Creates the key material for testing an https Dice-Auth in firmware-sample/certs/dice-auth/,
# leaving every other certificate alone (make-certs.sh recreates the whole certs folder, this
# folder included: run this script again after it).
#
#   ca.crt/.key          a self-signed CA standing for a private Dice-Auth PKI
#   server.crt/.key      dice-auth-verifier's TLS server certificate under ca, for the names
#                        localhost and 127.0.0.1 (not ::1, so a test can use it for a wrong name)
#   client-ca.crt/.key   the CA Dice-Auth trusts for client certificates (mutual TLS)
#   client.crt/.key      the agent's client certificate under client-ca
#   other-client.crt/.key  a client certificate under a CA Dice-Auth does not trust
#
# The keys and serial numbers are new on every run. These keys are published with the source:
# never deploy them.
#
# Needs only the openssl command line tool (OpenSSL 3.0).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="$script_dir/certs/dice-auth"
validity_days=7305 # 20 years, leap days included

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# Our own configuration, so that the system's openssl.cnf defaults cannot change the result.
config="$work_dir/openssl.cnf"
cat >"$config" <<'CONF'
[req]
distinguished_name = req_distinguished_name
prompt = no

[req_distinguished_name]

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CONF

quietly() { # runs a command, showing its chatter on stderr only on failure
    if ! "$@" 2>"$work_dir/stderr"; then
        cat "$work_dir/stderr" >&2
        return 1
    fi
}

new_key() { # new_key FILE: ECDSA P-256, mode 0600 from its creation on
    (umask 077 && quietly openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1")
    chmod 0600 "$1"
}

random_serial() { # a positive serial number of 16 random bytes
    printf '0x7%s' "$(openssl rand -hex 15)"
}

authority() { # authority NAME SUBJECT
    new_key "$out_dir/$1.key"
    openssl req -new -x509 -config "$config" -extensions ca -key "$out_dir/$1.key" -subj "$2" \
        -days "$validity_days" -set_serial "$(random_serial)" -sha256 -out "$out_dir/$1.crt"
}

issued() { # issued NAME ISSUER SUBJECT EXTENSIONS
    local name="$1" issuer="$2" subject="$3" extensions="$4"
    new_key "$out_dir/$name.key"
    openssl req -new -config "$config" -key "$out_dir/$name.key" -subj "$subject" \
        -out "$work_dir/$name.csr"
    quietly openssl x509 -req -in "$work_dir/$name.csr" \
        -CA "$out_dir/$issuer.crt" -CAkey "$out_dir/$issuer.key" \
        -extfile "$config" -extensions "$extensions" -days "$validity_days" \
        -set_serial "$(random_serial)" -sha256 -out "$out_dir/$name.crt"
}

rm -rf "$out_dir"
mkdir -p "$out_dir"

organization="ota-agent demo Dice-Auth"
authority ca "/CN=Dice-Auth Test CA/O=$organization"
issued server ca "/CN=localhost/O=$organization" server
authority client-ca "/CN=Dice-Auth Client CA/O=$organization"
issued client client-ca "/CN=ota-agent gateway/O=$organization" client
authority other-client-ca "/CN=Untrusted Client CA/O=not $organization"
issued other-client other-client-ca "/CN=ota-agent impostor/O=not $organization" client
# Only its certificate is needed: a CA nobody keeps signing with.
rm "$out_dir/other-client-ca.key" "$out_dir/other-client-ca.crt"

echo "wrote $(find "$out_dir" -type f | wc -l) files to $out_dir"
