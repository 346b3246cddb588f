/*
 * tests/support/etcd_cluster.c - start, fault and stop a real 3-member
 * etcd cluster for tests (see etcd_cluster.h; the scripts and their
 * measured timings: tests/support/etcd/README.md).
 *
 * Safety rule: only PIDs read from this cluster's own DIR/pids are
 * signalled.
 */
#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef VMENC_SOURCE_DIR
#define VMENC_SOURCE_DIR "."
#endif

static int wait_gone(etcd_cluster *c, int i);

static int read_pids(etcd_cluster *c) {
    char path[192];
    snprintf(path, sizeof(path), "%s/pids", c->dir);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    char name[16];
    long pid;
    while (fscanf(fp, "%15s %ld", name, &pid) == 2)
        for (int i = 0; i < ETCD_CLUSTER_MEMBERS; i++)
            if (strcmp(name, c->names[i]) == 0)
                c->pids[i] = (pid_t)pid;
    fclose(fp);
    return 0;
}

static int read_members(etcd_cluster *c) {
    char path[192];
    snprintf(path, sizeof(path), "%s/members", c->dir);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    int n = 0;
    char name[16], url[64], peer[64];
    c->endpoints[0] = '\0';
    while (n < ETCD_CLUSTER_MEMBERS && fscanf(fp, "%15s %63s %63s", name, url, peer) == 3) {
        snprintf(c->names[n], sizeof(c->names[n]), "%s", name);
        snprintf(c->urls[n], sizeof(c->urls[n]), "%s", url);
        size_t l = strlen(c->endpoints);
        snprintf(c->endpoints + l, sizeof(c->endpoints) - l, "%s%s", n ? "," : "", url);
        n++;
    }
    fclose(fp);
    return n == ETCD_CLUSTER_MEMBERS ? 0 : -1;
}

int etcd_cluster_start(etcd_cluster *c) {
    memset(c, 0, sizeof(*c));
    if (system("command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: etcd/etcdctl not installed (apt-get install etcd-server etcd-client)\n");
        return -1;
    }
    snprintf(c->dir, sizeof(c->dir), "/tmp/vmenc-etcd-XXXXXX");
    if (mkdtemp(c->dir) == NULL) {
        fprintf(stderr, "SKIP: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/tests/support/etcd/start-etcd-cluster.sh %s >%s/start.out 2>&1",
             VMENC_SOURCE_DIR, c->dir, c->dir);
    c->started = true; /* from here on, stop cleans up whatever started */
    if (system(cmd) != 0 || read_members(c) != 0 || read_pids(c) != 0) {
        fprintf(stderr, "SKIP: the etcd cluster did not start (see below)\n");
        snprintf(cmd, sizeof(cmd), "tail -20 %s/start.out >&2", c->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no start log)\n");
        etcd_cluster_stop(c);
        return -1;
    }
    snprintf(c->cacert, sizeof(c->cacert), "%s/certs/ca.crt", c->dir);
    snprintf(c->cert, sizeof(c->cert), "%s/certs/client.crt", c->dir);
    snprintf(c->key, sizeof(c->key), "%s/certs/client.key", c->dir);
    return 0;
}

void etcd_cluster_stop(etcd_cluster *c) {
    if (!c->started)
        return;
    c->started = false;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/tests/support/etcd/stop-etcd-cluster.sh %s >/dev/null 2>&1; rm -rf %s",
             VMENC_SOURCE_DIR, c->dir, c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: stopping the etcd cluster in %s failed\n", c->dir);
}

int etcd_cluster_signal(etcd_cluster *c, int i, int sig) {
    if (i < 0 || i >= ETCD_CLUSTER_MEMBERS || c->pids[i] <= 0)
        return -1;
    return kill(c->pids[i], sig);
}

/* port_refuses: does a TCP connect to member |i|'s client port get
 * refused? Once it does, the kernel has also processed the closing of
 * the member's established connections (their FIN went out before the
 * listening socket's close was seen), so a client's kept connection shows
 * as closed. */
static bool port_refuses(const etcd_cluster *c, int i) {
    const char *colon = strrchr(c->urls[i], ':');
    if (colon == NULL)
        return true;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    int err = errno;
    close(fd);
    return rc != 0 && err == ECONNREFUSED;
}

int etcd_cluster_kill(etcd_cluster *c, int i) {
    if (etcd_cluster_signal(c, i, SIGKILL) != 0)
        return -1;
    int rc = wait_gone(c, i);
    for (int k = 0; rc == 0 && k < 200 && !port_refuses(c, i); k++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return rc;
}

static int wait_gone(etcd_cluster *c, int i) {
    /* the member is the script's child, not ours: wait until it is gone
     * (or a zombie nobody will see as listening) */
    for (int k = 0; k < 200; k++) {
        char path[64], state = 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)c->pids[i]);
        FILE *fp = fopen(path, "r");
        if (fp == NULL)
            return 0;
        int pid;
        char comm[64];
        int n = fscanf(fp, "%d %63s %c", &pid, comm, &state);
        fclose(fp);
        if (n == 3 && (state == 'Z' || state == 'X'))
            return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int etcd_cluster_restart(etcd_cluster *c, int i) {
    if (i < 0 || i >= ETCD_CLUSTER_MEMBERS)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/tests/support/etcd/start-etcd-cluster.sh --restart %s %s >>%s/start.out 2>&1",
             VMENC_SOURCE_DIR, c->dir, c->names[i], c->dir);
    if (system(cmd) != 0)
        return -1;
    return read_pids(c);
}

void etcd_cluster_config(const etcd_cluster *c, vmenc_etcd_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->endpoints = c->endpoints;
    cfg->ca_file = c->cacert;
    cfg->cert_file = c->cert;
    cfg->key_file = c->key;
}

int etcd_cluster_leader(const etcd_cluster *c, vmenc_etcd *client) {
    (void)c;
    for (size_t i = 0; i < vmenc_etcd_num_endpoints(client); i++) {
        vmenc_etcd_member_status ms;
        if (vmenc_etcd_status(client, i, &ms) == VMENC_OK && ms.is_leader)
            return (int)i;
    }
    return -1;
}
