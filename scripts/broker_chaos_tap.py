#!/usr/bin/python3
"""scripts/broker_chaos_tap.py - the host-side tap of scripts/broker-chaos.sh.

What it is: a TLS relay that sits on a host's side of the wire between the
host's KMIP provider and one key broker, holding that host's own client
certificate, and writes one line "HOST KEK_ID" to LOG for every key the host
actually received (a KMIP response carrying Key Material 0x420043). It is the
count of keys a host obtained, taken without the broker's code or its audit
log, so the chaos checker (scripts/broker_chaos_check.py) can compare it
with the releases the brokers audited: a key seen here that no broker
audited is a violation. The TTLV framing is KMIP 1.4 section 9.1; the
broker's responses are described in docs/broker.md.

Usage: broker_chaos_tap.py LOG CA SERVER_CERT SERVER_KEY SPEC...
  SPEC = LISTEN_PORT:BROKER_PORT:HOST:HOST_CERT:HOST_KEY
Runs until killed. Safety rule: it keeps no key - it logs key identifiers
only, and the key bytes pass through it in memory as they arrive.
"""
import os
import select
import socket
import ssl
import sys
import threading
import time

TAG_KEY_MATERIAL = b"\x42\x00\x43\x08"
TAG_UNIQUE_ID = b"\x42\x00\x94\x07"
LOCK = threading.Lock()
TRACE = bool(os.environ.get("VMENC_CHAOS_TAP_TRACE"))   # log every connection to stderr


def keys_in(msg):
    """(unique id) for each Key Material in one TTLV response message."""
    out, pos, last_id = [], 0, None
    while pos + 8 <= len(msg):
        tag, typ = msg[pos:pos + 3], msg[pos + 3]
        n = int.from_bytes(msg[pos + 4:pos + 8], "big")
        if typ == 0x01:                     # structure: descend
            pos += 8
            continue
        val = msg[pos + 8:pos + 8 + n]
        if tag + bytes([typ]) == TAG_UNIQUE_ID:
            last_id = val.decode("utf-8", "replace")
        elif tag + bytes([typ]) == TAG_KEY_MATERIAL:
            out.append(last_id or "?")
        pos += 8 + ((n + 7) // 8) * 8
    return out


def note(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def relay(tc, bc, host, log):
    """Both directions in one thread: an SSL object must never be used by two
    threads at once (a reader and a writer thread per socket crashed Python's
    ssl module and corrupted records now and then)."""
    other = {tc: bc, bc: tc}
    buf = b""
    try:
        while True:
            ready = [s for s in (tc, bc) if s.pending()]
            if not ready:
                ready, _, _ = select.select([tc, bc], [], [], 120)
                if not ready:
                    return                   # idle: the broker closes idle connections anyway
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                if s is bc:                  # broker -> host: count the keys it carries
                    buf += data
                    while len(buf) >= 8:
                        total = 8 + int.from_bytes(buf[4:8], "big")
                        if len(buf) < total:
                            break
                        for kek in keys_in(buf[:total]):
                            with LOCK:
                                log.write(f"{host} {kek}\n")
                                log.flush()
                        buf = buf[total:]
                other[s].sendall(data)
    except (OSError, ssl.SSLError):
        pass


def serve(spec, ca, scert, skey, log):
    lport, bport, host, hcert, hkey = spec.split(":")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(scert, skey)
    sctx.verify_mode = ssl.CERT_OPTIONAL     # the host's own certificate; the broker checks it
    sctx.load_verify_locations(ca)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(ca)
    cctx.load_cert_chain(hcert, hkey)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(lport)))
    ls.listen(16)

    def one(conn):
        if TRACE:
            note(f"{host} tap {lport}: accepted")
        try:
            tc = sctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as e:
            note(f"{host} -> tap {lport}: {e!r}")
            conn.close()
            return
        try:
            raw = socket.create_connection(("127.0.0.1", int(bport)), timeout=5)
            raw.settimeout(None)
            bc = cctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except (OSError, ssl.SSLError) as e:
            note(f"{host} tap -> broker {bport}: {e!r}")
            tc.close()                       # broker down: the host fails over
            return
        if TRACE:
            note(f"{host} tap {lport} -> broker {bport}: connected")
        relay(tc, bc, host, log)
        if TRACE:
            note(f"{host} tap {lport} -> broker {bport}: closed")
        tc.close()
        bc.close()

    while True:
        conn, _ = ls.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def main():
    log_path, ca, scert, skey, *specs = sys.argv[1:]
    log = open(log_path, "a")
    for spec in specs:
        threading.Thread(target=serve, args=(spec, ca, scert, skey, log), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
