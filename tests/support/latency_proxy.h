/*
 * tests/support/latency_proxy.h - a TCP relay on 127.0.0.1 that delivers
 * everything the server sends a fixed time after it arrived: a slow
 * control plane for tests (each answer, and each TLS handshake flight of
 * the server, comes late; the client's bytes go at once). A fault
 * injector only: it relays bytes and understands none of them (TLS passes
 * through, so the client still verifies the real server's certificate).
 *
 * Safety rule: every socket and thread the proxy opens is closed and
 * joined by latency_proxy_stop, also when a test failed midway.
 */
#ifndef VMENC_TESTS_LATENCY_PROXY_H
#define VMENC_TESTS_LATENCY_PROXY_H

#include <stdint.h>

typedef struct latency_proxy latency_proxy;

/* latency_proxy_start listens on a free port of 127.0.0.1 and relays each
 * connection to 127.0.0.1:|to_port|, delivering the server's bytes
 * |delay_ms| after they arrived. Returns 0, or -1 (errno set). */
int latency_proxy_start(uint16_t to_port, uint32_t delay_ms, latency_proxy **out);
/* latency_proxy_port: the port it listens on. */
uint16_t latency_proxy_port(const latency_proxy *p);
/* latency_proxy_set_delay: bytes that arrive from now on are delivered
 * |delay_ms| after they arrived. */
void latency_proxy_set_delay(latency_proxy *p, uint32_t delay_ms);
/* latency_proxy_stop closes every connection, joins every thread and
 * frees |p|. Accepts NULL. */
void latency_proxy_stop(latency_proxy *p);

#endif
