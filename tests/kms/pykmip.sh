#!/usr/bin/env bash
# tests/kms/pykmip.sh - throwaway PyKMIP (KMIP 1.0-2.0, TTLV over TLS 1.2)
# test server for vmenc's KMIP tests and benchmark. Derived from the
# project's start-pykmip.sh recipe, kept here so the test suite does not
# depend on anything outside the repository; adds --certs-only.
# Needs Debian 12 packages: python3-pykmip openssl.
#
# Usage:
#   pykmip.sh DIR [PORT] [DB_FILE]   start a server in the background and
#                                    print its PID on stdout
#   pykmip.sh --stop DIR [PORT]      stop the server started for DIR/PORT
#   pykmip.sh --certs-only DIR       only make DIR/certs (e.g. a second,
#                                    unrelated CA for negative tests)
#
#   DIR      work dir (created): certs/, server-PORT.{conf,log,out,pid},
#            client-PORT.conf (a [client] section for kmip.pie.ProxyKmipClient)
#   PORT     TCP port on 127.0.0.1 (default 5696)
#   DB_FILE  SQLite database (default DIR/pykmip-PORT.db). Start two servers
#            with the same DIR and DB_FILE to emulate a replicated KMS pair.
#
# Certificates in DIR/certs are made once and reused by every server started
# with that DIR: ca.crt, server.{crt,key} (CN localhost, SAN IP:127.0.0.1 and
# DNS:localhost), client.{crt,key} (EKU clientAuth). The client cert's CN is
# the KMIP identity that owns the objects it creates; a client with another CN
# cannot Get or Locate them.
#
# Environment:
#   KMIP_KEY_ALG=rsa|ec     server key type (default rsa; ec also allows the
#                           ECDHE-ECDSA-AES-GCM suites)      } used only when
#   KMIP_CLIENT_CN=NAME     client cert CN (kmip-test-client) } certs are made
#   KMIP_LOG_LEVEL=LEVEL    DEBUG|INFO|WARNING... (default INFO)
#   KMIP_START_TIMEOUT=SEC  how long to wait for the TLS port (default 30)
#   PYKMIP_PYTHON=PATH      interpreter that has the kmip module
#                           (default /usr/bin/python3, not a pyenv/venv shim)
set -euo pipefail

PY=${PYKMIP_PYTHON:-/usr/bin/python3}
HOST=127.0.0.1

die() { echo "start-pykmip: $*" >&2; exit 1; }
log() { echo "start-pykmip: $*" >&2; }

# --- stop mode ---------------------------------------------------------------
if [[ ${1:-} == --stop ]]; then
    [[ $# -ge 2 ]] || die "usage: $0 --stop DIR [PORT]"
    DIR=$2; PORT=${3:-5696}
    pidfile=$DIR/server-$PORT.pid
    [[ -f $pidfile ]] || die "no pid file $pidfile"
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        # SIGINT stops PyKMIP in ~2 s; SIGTERM waits for the 10 s accept timeout.
        kill -INT "$pid"
    fi
    # The server was started with setsid, so its process group (itself, its
    # multiprocessing manager and policy monitor) is ours: wait, then force.
    for _ in $(seq 1 150); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
    log "stopped $pid"
    exit 0
fi

CERTS_ONLY=0
if [[ ${1:-} == --certs-only ]]; then
    CERTS_ONLY=1
    shift
fi
[[ $# -ge 1 ]] || die "usage: $0 DIR [PORT] [DB_FILE] | --stop DIR [PORT] | --certs-only DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
PORT=${2:-5696}
DB=${3:-$DIR/pykmip-$PORT.db}
mkdir -p "$(dirname "$DB")"
DB=$(cd "$(dirname "$DB")" && pwd)/$(basename "$DB")
KEY_ALG=${KMIP_KEY_ALG:-rsa}
CLIENT_CN=${KMIP_CLIENT_CN:-kmip-test-client}
LEVEL=${KMIP_LOG_LEVEL:-INFO}
TIMEOUT=${KMIP_START_TIMEOUT:-30}

"$PY" -c 'import kmip' 2>/dev/null ||
    die "$PY cannot import kmip: apt-get install python3-pykmip"
SERVER_BIN=$(command -v pykmip-server || echo /usr/bin/pykmip-server)
[[ -f $SERVER_BIN ]] || die "pykmip-server not found"
command -v openssl >/dev/null || die "openssl not found"

# Refuse a busy port: the readiness probe could otherwise reach another server.
if (( ! CERTS_ONLY )) && (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    die "port $PORT on $HOST is already in use"
fi

# --- certificates (made once per DIR) ----------------------------------------
C=$DIR/certs
if [[ ! -f $C/client.key ]]; then
    mkdir -p "$C"
    ( umask 077
      cat > "$C/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
# PyKMIP rejects client certs without clientAuth (enable_tls_client_auth)
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
      q() { "$@" >/dev/null 2>&1 || die "failed: $*"; }
      serial() { echo "0x$(openssl rand -hex 8)"; }
      case $KEY_ALG in
          rsa) skey=(-newkey rsa:2048) ;;
          ec)  skey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
          *)   die "KMIP_KEY_ALG must be rsa or ec" ;;
      esac
      q openssl req -config "$C/openssl.cnf" -x509 -newkey rsa:2048 -nodes \
          -keyout "$C/ca.key" -out "$C/ca.crt" -days 365 \
          -subj "/CN=Throwaway KMIP test CA" -extensions ca_ext
      q openssl req -config "$C/openssl.cnf" -new "${skey[@]}" -nodes \
          -keyout "$C/server.key" -out "$C/server.csr" -subj "/CN=localhost"
      q openssl x509 -req -in "$C/server.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" \
          -set_serial "$(serial)" -days 365 -sha256 \
          -extfile "$C/openssl.cnf" -extensions server_ext -out "$C/server.crt"
      q openssl req -config "$C/openssl.cnf" -new -newkey rsa:2048 -nodes \
          -keyout "$C/client.key" -out "$C/client.csr" -subj "/CN=$CLIENT_CN"
      q openssl x509 -req -in "$C/client.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" \
          -set_serial "$(serial)" -days 365 -sha256 \
          -extfile "$C/openssl.cnf" -extensions client_ext -out "$C/client.crt"
      rm -f "$C"/*.csr
      chmod 644 "$C"/*.crt
    )
    log "made CA, server and client certificates in $C"
fi

(( CERTS_ONLY )) && exit 0

# --- configuration -------------------------------------------------------------
# An empty policy dir: without policy_path PyKMIP scans its *working dir* for
# *.json policy files every second.
mkdir -p "$DIR/policies"
CONF=$DIR/server-$PORT.conf
cat > "$CONF" <<EOF
[server]
hostname=$HOST
port=$PORT
certificate_path=$C/server.crt
key_path=$C/server.key
ca_path=$C/ca.crt
# TLS1.2 = TLS 1.2 only (no 1.3), KMIP TLS 1.2 cipher suites; Basic = TLS 1.0
auth_suite=TLS1.2
policy_path=$DIR/policies
enable_tls_client_auth=True
logging_level=$LEVEL
# without this every server shares /tmp/pykmip.database
database_path=$DB
EOF

cat > "$DIR/client-$PORT.conf" <<EOF
[client]
host=$HOST
port=$PORT
certfile=$C/client.crt
keyfile=$C/client.key
ca_certs=$C/ca.crt
cert_reqs=CERT_REQUIRED
ssl_version=PROTOCOL_TLSv1_2
do_handshake_on_connect=True
suppress_ragged_eofs=True
EOF

# --- start ---------------------------------------------------------------------
LOG=$DIR/server-$PORT.log      # PyKMIP's own log (default is /var/log/pykmip)
OUT=$DIR/server-$PORT.out      # stdout/stderr
# setsid: own session and process group, so --stop can clean up its children.
PYTHONWARNINGS=ignore setsid "$PY" "$SERVER_BIN" -f "$CONF" -l "$LOG" \
    >"$OUT" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$DIR/server-$PORT.pid"

# Ready = a full TLS handshake with the client certificate succeeds.
start=$SECONDS
until openssl s_client -connect "$HOST:$PORT" -CAfile "$C/ca.crt" \
        -cert "$C/client.crt" -key "$C/client.key" -verify_return_error \
        </dev/null >/dev/null 2>&1; do
    if ! kill -0 "$PID" 2>/dev/null; then
        tail -n 20 "$OUT" "$LOG" >&2 || true
        rm -f "$DIR/server-$PORT.pid"
        die "server exited during startup"
    fi
    if (( SECONDS - start >= TIMEOUT )); then
        tail -n 20 "$OUT" "$LOG" >&2 || true
        kill -INT "$PID" 2>/dev/null || true
        die "server not ready after ${TIMEOUT}s"
    fi
    sleep 0.1
done

log "PyKMIP listening on $HOST:$PORT (pid $PID, db $DB, log $LOG)"
log "client: cert $C/client.crt key $C/client.key ca $C/ca.crt"
echo "$PID"
