#!/usr/bin/env bash
# tests/broker/mkcerts.sh DIR HOST... - throwaway PKI for the key broker
# tests: DIR/ca.{crt,key} (the CA that signs host client certificates),
# DIR/broker.{crt,key} (the brokers' server certificate: CN localhost, SAN
# IP:127.0.0.1), DIR/<HOST>.{crt,key} (client certificates, EKU clientAuth,
# CN = the host). EC P-256 keys: fast to make. Needs openssl.
set -euo pipefail
DIR=$1; shift
mkdir -p "$DIR"
cd "$DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -days 2 -subj "/CN=vmenc broker test CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
mk() { # name eku san
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
        -subj "/CN=$1" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n%s' "$2" "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" \
        -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
mk broker serverAuth "subjectAltName=IP:127.0.0.1,DNS:localhost"
for h in "$@"; do mk "$h" clientAuth ""; done
