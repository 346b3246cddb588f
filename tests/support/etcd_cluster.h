/*
 * tests/support/etcd_cluster.h - a real 3-member mutual-TLS etcd cluster
 * for tests, started and stopped through tests/support/etcd/
 * start-etcd-cluster.sh and stop-etcd-cluster.sh (their README describes
 * the cluster, its files and its timings), plus the member faults the
 * tests inject: SIGKILL, SIGSTOP/SIGCONT, restart.
 *
 * Safety rule: only the PIDs the start script recorded for this cluster's
 * own directory are ever signalled, and the cluster is stopped and its
 * directory removed by etcd_cluster_stop, also when a test failed.
 */
#ifndef VMENC_TESTS_ETCD_CLUSTER_H
#define VMENC_TESTS_ETCD_CLUSTER_H

#include <stdbool.h>
#include <sys/types.h>

#include "net/etcd.h"

#define ETCD_CLUSTER_MEMBERS 3

typedef struct etcd_cluster {
    char dir[128];
    char endpoints[512];
    char cacert[256], cert[256], key[256];
    char names[ETCD_CLUSTER_MEMBERS][16];
    char urls[ETCD_CLUSTER_MEMBERS][64];
    pid_t pids[ETCD_CLUSTER_MEMBERS];
    bool started;
} etcd_cluster;

/* etcd_cluster_start starts a fresh cluster in a new directory under /tmp.
 * Returns 0, or -1 after printing why (the caller then exits 77: skip). */
int etcd_cluster_start(etcd_cluster *c);
/* etcd_cluster_stop stops every member (SIGCONT first) and removes the
 * directory. Safe to call twice. */
void etcd_cluster_stop(etcd_cluster *c);
/* etcd_cluster_signal sends |sig| to member |i| (0..2); 0 on success. */
int etcd_cluster_signal(etcd_cluster *c, int i, int sig);
/* etcd_cluster_kill SIGKILLs member |i| and reaps nothing (not our child);
 * waits until the process is gone. */
int etcd_cluster_kill(etcd_cluster *c, int i);
/* etcd_cluster_restart starts member |i| again on its data and waits
 * until it is healthy; 0 on success. */
int etcd_cluster_restart(etcd_cluster *c, int i);
/* etcd_cluster_config fills a client configuration for all members. */
void etcd_cluster_config(const etcd_cluster *c, vmenc_etcd_config *cfg);
/* etcd_cluster_leader: the index of the member that is leader, asked
 * through |client| (-1 if none answers as leader). */
int etcd_cluster_leader(const etcd_cluster *c, vmenc_etcd *client);

#endif
