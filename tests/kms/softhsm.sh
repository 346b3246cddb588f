#!/usr/bin/env bash
# tests/kms/softhsm.sh - throwaway SoftHSM2 token for the PKCS#11 provider's
# tests and benchmark (a copy of the project's start-softhsm.sh recipe, so the
# test suite depends on nothing outside the repository): a token with a
# non-extractable AES-256
# key-encryption key (wrap/unwrap + encrypt/decrypt, e.g. CKM_AES_KEY_WRAP,
# CKM_AES_KEY_WRAP_PAD, CKM_AES_GCM).
# Needs Debian 12 packages: softhsm2 opensc (for pkcs11-tool).
#
# Usage:  eval "$(softhsm.sh DIR)"
#   DIR gets softhsm2.conf, tokens/ and env.sh; stdout is only the export
#   lines that env.sh also holds. Rerunning with the same DIR re-creates the
#   token (only tokens under DIR are touched). Nothing runs in the background:
#   SoftHSM is a library; `rm -rf DIR` removes everything.
#
# Environment (defaults in brackets):
#   SOFTHSM_TOKEN_LABEL [kms-test]  SOFTHSM_SO_PIN [12345678]
#   SOFTHSM_USER_PIN [1234]         SOFTHSM_KEY_LABEL [kek]
#   SOFTHSM_KEY_ID [01] (hex)       SOFTHSM_SELFTEST [1]: wrap/unwrap check
#   SOFTHSM_MODULE [/usr/lib/softhsm/libsofthsm2.so]
set -euo pipefail

die() { echo "start-softhsm: $*" >&2; exit 1; }
log() { echo "start-softhsm: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: $0 DIR"
MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
LABEL=${SOFTHSM_TOKEN_LABEL:-kms-test}
SO_PIN=${SOFTHSM_SO_PIN:-12345678}
PIN=${SOFTHSM_USER_PIN:-1234}
KEY_LABEL=${SOFTHSM_KEY_LABEL:-kek}
KEY_ID=${SOFTHSM_KEY_ID:-01}

[[ -f $MODULE ]] || die "$MODULE missing: apt-get install softhsm2"
command -v softhsm2-util >/dev/null || die "softhsm2-util missing: apt-get install softhsm2"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool missing: apt-get install opensc"
(( ${#PIN} >= 4 && ${#SO_PIN} >= 4 )) || die "PINs must have at least 4 characters"

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
mkdir -p "$DIR/tokens"
chmod 700 "$DIR" "$DIR/tokens"

# Private config: without SOFTHSM2_CONF every tool and library uses
# /etc/softhsm/softhsm2.conf and the shared /var/lib/softhsm/tokens.
cat > "$DIR/softhsm2.conf" <<EOF
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
EOF
export SOFTHSM2_CONF=$DIR/softhsm2.conf

# Fresh token. The slot number changes at init, so always select by label.
softhsm2-util --delete-token --token "$LABEL" >/dev/null 2>&1 || true
softhsm2-util --init-token --free --label "$LABEL" \
    --so-pin "$SO_PIN" --pin "$PIN" >/dev/null ||
    die "token init failed"

p11() { pkcs11-tool --module "$MODULE" --token-label "$LABEL" --login --pin "$PIN" "$@"; }

# AES-256 KEK: token object, private, sensitive, CKA_EXTRACTABLE=false
# (pkcs11-tool sets it only with --extractable), usable for
# wrap/unwrap (--usage-wrap) and encrypt/decrypt (--usage-decrypt).
p11 --keygen --key-type AES:32 --label "$KEY_LABEL" --id "$KEY_ID" \
    --usage-wrap --usage-decrypt --sensitive --private >/dev/null 2>&1 ||
    die "AES key generation failed"
info=$(p11 --list-objects --type secrkey --id "$KEY_ID" 2>/dev/null)
grep -q 'never extractable' <<<"$info" || die "key is extractable: $info"
grep -q 'unwrap' <<<"$info" || die "key lacks CKA_WRAP/CKA_UNWRAP: $info"

# Self-test: wrap a 64-byte extractable secret with the KEK (RFC 5649, which
# SoftHSM 2.6 calls CKM_AES_KEY_WRAP_PAD 0x210A), unwrap it, compare, clean up.
if [[ ${SOFTHSM_SELFTEST:-1} == 1 ]]; then
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    {
        p11 --keygen --key-type GENERIC:64 --label selftest --id ff --extractable &&
        p11 --read-object --type secrkey --id ff -o "$t/secret" &&
        p11 --wrap -m 0x210A --id "$KEY_ID" --application-id ff -o "$t/wrapped" &&
        # The unwrap template must not carry CKA_VALUE_LEN ("GENERIC:" with
        # no length); SoftHSM answers CKR_ATTRIBUTE_READ_ONLY otherwise.
        p11 --unwrap -m 0x210A --id "$KEY_ID" -i "$t/wrapped" --key-type GENERIC: \
            --application-id fe --application-label selftest-unwrapped --extractable &&
        p11 --read-object --type secrkey --id fe -o "$t/unwrapped"
    } >/dev/null 2>&1 || die "wrap/unwrap self-test failed"
    p11 --delete-object --type secrkey --id ff >/dev/null 2>&1
    p11 --delete-object --type secrkey --id fe >/dev/null 2>&1
    if [[ $(stat -c %s "$t/secret") != 64 || $(stat -c %s "$t/wrapped") != 72 ]] ||
       ! cmp -s "$t/secret" "$t/unwrapped"; then
        die "self-test: unwrapped secret differs"
    fi
    log "self-test ok: 64-byte secret -> 72-byte wrapped -> same 64 bytes"
fi

cat > "$DIR/env.sh" <<EOF
export SOFTHSM2_CONF='$DIR/softhsm2.conf'
export PKCS11_MODULE='$MODULE'
export PKCS11_TOKEN_LABEL='$LABEL'
export PKCS11_SO_PIN='$SO_PIN'
export PKCS11_USER_PIN='$PIN'
export PKCS11_KEY_LABEL='$KEY_LABEL'
export PKCS11_KEY_ID='$KEY_ID'
EOF
log "token '$LABEL' ready in $DIR (key '$KEY_LABEL', id $KEY_ID)"
cat "$DIR/env.sh"
