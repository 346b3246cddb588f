/*
 * tests/tpm/swtpm_host.h - one throwaway software TPM per test "host" for
 * the C tests: runs tests/tpm/start-swtpm.sh (the verified recipe of
 * ../shared/recipes/tpm, documented in its header) and reads back its
 * export lines; stop-swtpm.sh stops exactly that process. Header-only so
 * the test files stay the only users. Its one safety rule: a host that did
 * not start is reported (the caller skips with 77 and says why), never
 * silently replaced.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_TESTS_TPM_SWTPM_HOST_H
#define VMENC_TESTS_TPM_SWTPM_HOST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct swtpm_host {
    char dir[512];
    char tcti[128];
    bool running;
} swtpm_host;

/* swtpm_available: swtpm and swtpm_setup on PATH (else the reason in |why|). */
static inline bool swtpm_available(const char **why) {
    if (system("command -v swtpm >/dev/null 2>&1 && command -v swtpm_setup >/dev/null 2>&1") != 0) {
        *why = "swtpm/swtpm_setup not installed (apt-get install swtpm swtpm-tools)";
        return false;
    }
    return true;
}

/* swtpm_start manufactures and starts a TPM in |dir|; with |ek_cert| an EK
 * certificate signed by the CA in |ca_dir| (shared between hosts). */
static inline bool swtpm_start(swtpm_host *h, const char *dir, bool ek_cert, const char *ca_dir) {
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "SWTPM_EK_CERT=%d SWTPM_CA_DIR='%s' bash '%s/tests/tpm/start-swtpm.sh' '%s'",
             ek_cert ? 1 : 0, ca_dir ? ca_dir : "", VMENC_SOURCE_DIR, dir);
    if (!ek_cert || ca_dir == NULL)
        snprintf(cmd, sizeof cmd, "SWTPM_EK_CERT=%d bash '%s/tests/tpm/start-swtpm.sh' '%s'", ek_cert ? 1 : 0,
                 VMENC_SOURCE_DIR, dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return false;
    char line[512];
    while (fgets(line, sizeof line, p) != NULL) {
        const char *k = "export SWTPM_TCTI='";
        if (strncmp(line, k, strlen(k)) == 0) {
            char *v = line + strlen(k);
            char *q = strchr(v, '\'');
            if (q != NULL && (size_t)(q - v) < sizeof h->tcti) {
                memcpy(h->tcti, v, (size_t)(q - v));
                h->tcti[q - v] = '\0';
            }
        }
    }
    int rc = pclose(p);
    h->running = rc == 0 && h->tcti[0] != '\0';
    return h->running;
}

static inline void swtpm_stop(swtpm_host *h) {
    if (!h->running)
        return;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tpm/stop-swtpm.sh' '%s' >/dev/null 2>&1", VMENC_SOURCE_DIR, h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "swtpm_host: stop-swtpm.sh %s failed\n", h->dir);
    h->running = false;
}

#endif /* VMENC_TESTS_TPM_SWTPM_HOST_H */
