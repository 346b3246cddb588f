/*
 * bench/bench_policy.c - authorization decisions per second on a large
 * policy: 10,000 inventory objects, 1,000 users in 100 (partly nested)
 * groups, 5,000 permissions, six custom and predefined roles. Also times
 * the JSON save and load of that policy.
 *
 * usage: bench_policy [SECONDS (default 2)] [THREADS (default 1)]
 * Prints one JSON line and one human line.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

#define NUM_OBJECTS 10000
#define NUM_USERS 1000
#define NUM_GROUPS 100
#define NUM_PERMS 5000
#define NUM_DC 10
#define HOSTS_PER_DC 20
#define TOP_FOLDERS_PER_DC 10
#define SUB_FOLDERS_PER_TOP 4
#define NUM_REQUESTS 8192

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

#define CHECK(x)                                                                     \
    do {                                                                             \
        vmenc_status s_ = (x);                                                       \
        if (s_ != VMENC_OK) {                                                        \
            fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #x,            \
                    vmenc_status_name(s_));                                          \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static char g_names[NUM_OBJECTS][24];
static vmenc_policy_object_type g_types[NUM_OBJECTS];
static int g_num_objects;
static int g_vms[NUM_OBJECTS], g_num_vms;
static int g_folders[NUM_OBJECTS], g_num_folders;
static int g_hosts[NUM_OBJECTS], g_num_hosts;
static int g_dcs[NUM_DC], g_num_dcs;

static int add_obj(vmenc_policy *p, vmenc_policy_object_type t, int parent, const char *prefix) {
    int i = g_num_objects++;
    snprintf(g_names[i], sizeof(g_names[i]), "%s-%d", prefix, i);
    g_types[i] = t;
    CHECK(vmenc_policy_add_object(p, g_names[i], t, g_names[parent]));
    if (t == VMENC_OBJ_VM) g_vms[g_num_vms++] = i;
    if (t == VMENC_OBJ_FOLDER) g_folders[g_num_folders++] = i;
    if (t == VMENC_OBJ_HOST) g_hosts[g_num_hosts++] = i;
    if (t == VMENC_OBJ_DATACENTER) g_dcs[g_num_dcs++] = i;
    return i;
}

static vmenc_policy *build(void) {
    vmenc_policy *p;
    snprintf(g_names[0], sizeof(g_names[0]), "root");
    g_num_objects = 1;
    CHECK(vmenc_policy_new("root", &p));
    int sub[NUM_DC * TOP_FOLDERS_PER_DC * SUB_FOLDERS_PER_TOP], num_sub = 0;
    for (int d = 0; d < NUM_DC; d++) {
        int dc = add_obj(p, VMENC_OBJ_DATACENTER, 0, "dc");
        int cl = add_obj(p, VMENC_OBJ_CLUSTER, dc, "cl");
        for (int h = 0; h < HOSTS_PER_DC; h++) {
            int host = add_obj(p, VMENC_OBJ_HOST, cl, "host");
            if (h % 2 == 0) {
                CHECK(vmenc_policy_set_host_state(p, g_names[host], VMENC_HOST_PREPARED));
                CHECK(vmenc_policy_set_host_state(p, g_names[host], VMENC_HOST_SAFE));
            }
        }
        for (int f = 0; f < TOP_FOLDERS_PER_DC; f++) {
            int top = add_obj(p, VMENC_OBJ_FOLDER, dc, "folder");
            for (int s = 0; s < SUB_FOLDERS_PER_TOP; s++)
                sub[num_sub++] = add_obj(p, VMENC_OBJ_FOLDER, top, "folder");
        }
    }
    while (g_num_objects < NUM_OBJECTS)
        add_obj(p, VMENC_OBJ_VM, sub[rnd() % num_sub], "vm");

    vmenc_policy_privilege enc[] = {VMENC_PRIV_SYSTEM_READ, VMENC_PRIV_VM_SETTINGS,
                                    VMENC_PRIV_CRYPTO_ENCRYPT, VMENC_PRIV_CRYPTO_ENCRYPT_NEW,
                                    VMENC_PRIV_VM_CREATE, VMENC_PRIV_VM_CLONE};
    vmenc_policy_privilege ops[] = {VMENC_PRIV_SYSTEM_READ, VMENC_PRIV_VM_POWER_ON,
                                    VMENC_PRIV_VM_POWER_OFF, VMENC_PRIV_VM_CONSOLE,
                                    VMENC_PRIV_RESOURCE_HOT_MIGRATE};
    CHECK(vmenc_policy_add_role(p, "EncryptNoDecrypt", enc, VMENC_ARRAY_LEN(enc)));
    CHECK(vmenc_policy_add_role(p, "Operator", ops, VMENC_ARRAY_LEN(ops)));
    static const char *const roles[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN,
                                        VMENC_ROLE_READ_ONLY, VMENC_ROLE_NO_ACCESS,
                                        "EncryptNoDecrypt", "Operator"};
    char name[32], group[32];
    for (int g = 0; g < NUM_GROUPS; g++) {
        snprintf(group, sizeof(group), "group-%d", g);
        CHECK(vmenc_policy_add_group(p, group));
    }
    for (int g = 0; g < 10; g++) { /* some nesting */
        snprintf(group, sizeof(group), "group-%d", g + 50);
        snprintf(name, sizeof(name), "group-%d", g);
        CHECK(vmenc_policy_add_member(p, group, name));
    }
    for (int u = 0; u < NUM_USERS; u++) {
        snprintf(name, sizeof(name), "user-%d", u);
        CHECK(vmenc_policy_add_user(p, name));
        snprintf(group, sizeof(group), "group-%d", u % NUM_GROUPS);
        CHECK(vmenc_policy_add_member(p, group, name));
        if ((u * 7) % NUM_GROUPS != u % NUM_GROUPS) {
            snprintf(group, sizeof(group), "group-%d", (u * 7) % NUM_GROUPS);
            CHECK(vmenc_policy_add_member(p, group, name));
        }
    }
    /* 5,000 permissions: each group holds a role on a datacenter (the way
     * sites are usually run), the rest sit on distinct folders and VMs
     * (objects visited with a stride coprime to their count), a fifth of
     * them not propagating. */
    static const char *const dc_roles[] = {VMENC_ROLE_NO_CRYPTO_ADMIN, "Operator",
                                           "EncryptNoDecrypt", VMENC_ROLE_READ_ONLY};
    int granted = 0;
    for (int g = 0; g < NUM_GROUPS; g++, granted++) {
        snprintf(group, sizeof(group), "group-%d", g);
        CHECK(vmenc_policy_grant(p, group, g_names[g_dcs[g % NUM_DC]], dc_roles[g % 4], 1));
    }
    for (uint64_t k = 0; granted < NUM_PERMS; k++) {
        int obj = (int)((k * 7919u) % (NUM_OBJECTS - 1)) + 1;
        if (g_types[obj] == VMENC_OBJ_DATACENTER)
            continue;
        int pr = (int)(rnd() % (NUM_USERS + NUM_GROUPS));
        if (pr < NUM_USERS)
            snprintf(name, sizeof(name), "user-%d", pr);
        else
            snprintf(name, sizeof(name), "group-%d", pr - NUM_USERS);
        CHECK(vmenc_policy_grant(p, name, g_names[obj], roles[rnd() % 6], rnd() % 5 != 0));
        granted++;
    }
    return p;
}

/* A request with its strings beside it, the way a caller holds the names of
 * what it is about to do in its own (hot) memory; reading the requests is
 * then sequential and the benchmark measures the policy, not scattered
 * benchmark data. */
typedef struct breq {
    vmenc_policy_request rq;
    char who[24], vm[24], folder[24], host[24];
} breq;

typedef struct job {
    vmenc_policy *p;
    const breq *rq;
    double seconds, cpu_seconds;
    uint64_t done, allowed;
} job;

/* The machine is shared: report decisions per second of this thread's CPU
 * time (per core) beside the wall-clock rate. */
static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
    job *j = arg;
    uint64_t t0 = vmenc_now_monotonic_ns(), deadline = t0 + (uint64_t)(j->seconds * 1e9);
    double c0 = thread_cpu_seconds();
    uint64_t n = 0, allowed = 0;
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    for (;;) {
        for (int i = 0; i < 1024; i++, n++) {
            size_t k = n % NUM_REQUESTS;
            vmenc_status st = vmenc_policy_check(j->p, j->rq[k].who, &j->rq[k].rq, &d);
            allowed += st == VMENC_OK;
        }
        if (vmenc_now_monotonic_ns() >= deadline)
            break;
    }
    j->done = n;
    j->allowed = allowed;
    j->seconds = (double)(vmenc_now_monotonic_ns() - t0) / 1e9;
    j->cpu_seconds = thread_cpu_seconds() - c0;
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (seconds <= 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: %s [SECONDS] [THREADS]\n", argv[0]);
        return 2;
    }
    CHECK(vmenc_init());
    uint64_t t0 = vmenc_now_monotonic_ns();
    vmenc_policy *p = build();
    double build_ms = (double)(vmenc_now_monotonic_ns() - t0) / 1e6;

    uint8_t *doc;
    size_t doc_len;
    t0 = vmenc_now_monotonic_ns();
    CHECK(vmenc_policy_save_json(p, &doc, &doc_len));
    double save_ms = (double)(vmenc_now_monotonic_ns() - t0) / 1e6;
    vmenc_policy *q;
    t0 = vmenc_now_monotonic_ns();
    CHECK(vmenc_policy_load_json(doc, doc_len, NULL, &q));
    double load_ms = (double)(vmenc_now_monotonic_ns() - t0) / 1e6;
    vmenc_policy_buffer_free(doc);
    vmenc_policy_free(p);

    /* A request mix over the whole inventory; the loaded policy answers. */
    static breq rq[NUM_REQUESTS];
    static const vmenc_policy_op mix[] = {VMENC_OP_POWER_ON, VMENC_OP_CLONE_VM,
                                          VMENC_OP_MIGRATE_VM, VMENC_OP_CONSOLE,
                                          VMENC_OP_ENCRYPT_VM, VMENC_OP_DECRYPT_VM,
                                          VMENC_OP_VIEW, VMENC_OP_EXPORT_VM};
    for (int i = 0; i < NUM_REQUESTS; i++) {
        breq *b = &rq[i];
        snprintf(b->who, sizeof(b->who), "user-%d", (int)(rnd() % NUM_USERS));
        snprintf(b->vm, sizeof(b->vm), "%s", g_names[g_vms[rnd() % g_num_vms]]);
        snprintf(b->folder, sizeof(b->folder), "%s", g_names[g_folders[rnd() % g_num_folders]]);
        snprintf(b->host, sizeof(b->host), "%s", g_names[g_hosts[rnd() % g_num_hosts]]);
        b->rq = (vmenc_policy_request){
            .struct_size = sizeof(b->rq), .op = mix[rnd() % VMENC_ARRAY_LEN(mix)],
            .vm = b->vm, .folder = b->folder, .host = b->host,
            .flags = (uint32_t)(rnd() & (VMENC_REQ_VM_ENCRYPTED | VMENC_REQ_POWERED_ON))};
    }

    job jobs[64];
    pthread_t t[64];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.p = q, .rq = rq, .seconds = seconds};
        if (pthread_create(&t[i], NULL, run, &jobs[i]) != 0)
            return 1;
    }
    uint64_t total = 0, allowed = 0;
    double rate = 0, per_core = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += jobs[i].done;
        allowed += jobs[i].allowed;
        rate += (double)jobs[i].done / jobs[i].seconds;
        per_core += (double)jobs[i].done / jobs[i].cpu_seconds / threads;
    }
    printf("{\"bench\":\"policy\",\"decisions_per_sec\":%.0f,\"decisions_per_cpu_sec\":%.0f,"
           "\"threads\":%d,\"objects\":%d,\"users\":%d,\"groups\":%d,\"permissions\":%d,"
           "\"allowed_fraction\":%.3f,\"build_ms\":%.1f,\"save_ms\":%.1f,\"load_ms\":%.1f,"
           "\"document_bytes\":%zu}\n",
           rate, per_core, threads, NUM_OBJECTS, NUM_USERS, NUM_GROUPS, NUM_PERMS,
           total ? (double)allowed / (double)total : 0.0, build_ms, save_ms, load_ms, doc_len);
    printf("policy: %.2f M decisions/s wall, %.2f M per CPU-second per thread (%d thread(s)), "
           "%.1f%% allowed; "
           "%d objects, %d users, %d groups, %d permissions; JSON %zu bytes, save %.1f ms, "
           "load %.1f ms\n",
           rate / 1e6, per_core / 1e6, threads, total ? 100.0 * (double)allowed / (double)total : 0,
           NUM_OBJECTS, NUM_USERS, NUM_GROUPS, NUM_PERMS, doc_len, save_ms, load_ms);
    vmenc_policy_free(q);
    return 0;
}
