/*
 * bench/bench_vm.c - what the disk layer costs on top of the cipher and the
 * file: vmenc_disk_pread/pwrite on an encrypted disk, next to plain
 * pread/pwrite of the same extent file and the raw XTS engine on the same
 * sizes, all in one run.
 *
 *   bench_vm [--rounds R] [--mib M]
 *
 * The extent (M MiB, default 64) is written in full first, so it is
 * page-cache resident and holds no holes; the host runs with
 * VMENC_HOST_NO_SYNC (no fdatasync), so nothing here waits for a device.
 * For each (op, I/O size 4 KiB / 64 KiB, sequential / random, 1 / 2
 * threads) the three contenders run interleaved, R rounds, and each rate is
 * the median. model_mbps = 1/(1/plain + 1/xts) is the time of a plain I/O
 * plus the time of the cipher, nothing more; ratio_vs_model is what the
 * disk layer keeps of that (1.0 = it adds nothing of its own), and
 * ratio_vs_plain what encryption costs against no encryption.
 * One JSON line per case.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define MAX_ROUNDS 64
#define BYTES_PER_SAMPLE ((uint64_t)64 << 20)

typedef enum { C_DISK = 0, C_PLAIN = 1, C_XTS = 2, NUM_C = 3 } contender;
static const char *const k_cname[] = {"vmenc_disk", "plain_file", "xts_engine"};

static vmenc_disk *g_disk;
static int g_fd = -1;
static vmenc_xts *g_xts;
static uint64_t g_cap;

typedef struct job {
    contender c;
    int write;
    size_t io;
    int random;
    uint64_t base, span; /* the thread's region */
    uint64_t bytes;
    uint8_t *buf;
    uint64_t seed;
    int failed;
} job;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *run_job(void *p) {
    job *j = p;
    uint64_t slots = j->span / j->io, seq = 0;
    for (uint64_t done = 0; done < j->bytes && !j->failed; done += j->io) {
        uint64_t slot = j->random ? rnd(&j->seed) % slots : seq++ % slots;
        uint64_t off = j->base + slot * j->io;
        switch (j->c) {
        case C_DISK:
            j->failed = (j->write ? vmenc_disk_pwrite(g_disk, off, j->buf, j->io)
                                  : vmenc_disk_pread(g_disk, off, j->io, j->buf)) != VMENC_OK;
            break;
        case C_PLAIN:
            j->failed = (j->write ? pwrite(g_fd, j->buf, j->io, (off_t)off)
                                  : pread(g_fd, j->buf, j->io, (off_t)off)) != (ssize_t)j->io;
            break;
        case C_XTS:
            j->failed = (j->write ? vmenc_xts_encrypt(g_xts, off / 512, j->buf, j->buf, j->io)
                                  : vmenc_xts_decrypt(g_xts, off / 512, j->buf, j->buf, j->io)) != VMENC_OK;
            break;
        default: j->failed = 1;
        }
    }
    return NULL;
}

/* sample runs one contender with |threads| threads; returns MB/s or -1. */
static double sample(contender c, int write, size_t io, int random, int threads, uint64_t round) {
    job jobs[2];
    pthread_t t[2];
    uint64_t span = g_cap / (uint64_t)threads;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.c = c, .write = write, .io = io, .random = random, .base = span * (uint64_t)i,
                        .span = span, .bytes = BYTES_PER_SAMPLE / (uint64_t)threads,
                        .buf = aligned_alloc(4096, io), .seed = 0x9e3779b97f4a7c15ull ^ (round * 7 + (uint64_t)i)};
        memset(jobs[i].buf, 0x5a, io);
    }
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        failed |= jobs[i].failed;
        free(jobs[i].buf);
    }
    double dt = now_s() - t0;
    return failed ? -1.0 : (double)BYTES_PER_SAMPLE / dt / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static vmenc_status count_cb(void *ctx, const vmenc_audit_event *ev, const char *json, size_t len) {
    (*(size_t *)ctx)++;
    return VMENC_OK;
}

/* setup: a host with a file key provider, an encrypted VM with one disk of
 * |mib| MiB written in full. */
static int setup(const char *dir, uint64_t mib, vmenc_keymgr **mgr, vmenc_policy **pol, vmenc_audit **aud,
                 vmenc_host **host, vmenc_vm **vm, size_t *events) {
    char ks[512], home[512];
    snprintf(ks, sizeof(ks), "%s/keystore", dir);
    snprintf(home, sizeof(home), "%s/bench", dir);
    static const char *const opts[] = {"create=1", "kdf_ops=1", "kdf_mem_kib=8192", NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = ks, .options = opts,
                                     .secret = (const uint8_t *)"bench", .secret_len = 5};
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "encrypted", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = "kms"};
    if (vmenc_keymgr_new(NULL, mgr) || vmenc_keymgr_add_cluster(*mgr, "kms", &cfg, 1, NULL) ||
        vmenc_policy_new("root", pol) || vmenc_policy_add_object(*pol, "esx", VMENC_OBJ_HOST, "root") ||
        vmenc_policy_add_object(*pol, "vms", VMENC_OBJ_FOLDER, "root") || vmenc_policy_add_user(*pol, "admin") ||
        vmenc_policy_grant(*pol, "admin", "root", VMENC_ROLE_ADMIN, 1) ||
        vmenc_policy_set_storage_policy(*pol, &sp) || vmenc_audit_new(aud) ||
        vmenc_audit_add_callback(*aud, count_cb, events))
        return -1;
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = "esx", .keymgr = *mgr, .policy = *pol,
                             .audit = *aud, .flags = VMENC_HOST_NO_SYNC};
    vmenc_vm_create_options co = {.struct_size = sizeof(co), .principal = "admin", .home_dir = home,
                                  .name = "bench", .folder = "vms", .storage_policy = "encrypted"};
    vmenc_disk_create_options dopt = {.struct_size = sizeof(dopt), .capacity = mib << 20, .sector_size = 512};
    char id[VMENC_DISK_ID_MAX + 1];
    if (vmenc_host_new(&ho, host) || vmenc_vm_create(*host, &co, vm) ||
        vmenc_vm_add_disk(*vm, "admin", &dopt, id, sizeof(id)) || vmenc_disk_open(*vm, "admin", id, 0, &g_disk))
        return -1;
    g_cap = mib << 20;
    uint8_t *buf = malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (uint64_t off = 0; off < g_cap; off += 1 << 20)
        if (vmenc_disk_pwrite(g_disk, off, buf, 1 << 20) != VMENC_OK)
            return -1;
    free(buf);
    char ext[600];
    snprintf(ext, sizeof(ext), "%s/bench_0-flat.vmdk", home);
    g_fd = open(ext, O_RDWR | O_CLOEXEC);
    uint8_t key[64];
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(i * 3 + 1);
    return g_fd >= 0 && vmenc_xts_new(key, 64, 512, &g_xts) == VMENC_OK ? 0 : -1;
}

int main(int argc, char **argv) {
    int rounds = 7;
    uint64_t mib = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--mib") == 0)
            mib = (uint64_t)atoll(argv[i + 1]);
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || mib < 4) {
        fprintf(stderr, "usage: bench_vm [--rounds 1..%d] [--mib >=4]\n", MAX_ROUNDS);
        return 2;
    }
    char dir[] = "/tmp/vmenc-bench-vm-XXXXXX";
    if (vmenc_init() != VMENC_OK || mkdtemp(dir) == NULL)
        return 1;
    vmenc_keymgr *mgr = NULL;
    vmenc_policy *pol = NULL;
    vmenc_audit *aud = NULL;
    vmenc_host *host = NULL;
    vmenc_vm *vm = NULL;
    size_t events = 0;
    int rc = 0;
    if (setup(dir, mib, &mgr, &pol, &aud, &host, &vm, &events) != 0) {
        fprintf(stderr, "bench_vm: setup failed\n");
        rc = 1;
        goto out;
    }
    fprintf(stderr, "bench_vm: %llu MiB extent, xts backend %s, %d rounds\n", (unsigned long long)mib,
            vmenc_xts_impl_name(g_xts), rounds);
    static const size_t sizes[] = {4096, 65536};
    for (int write = 0; write <= 1; write++)
        for (size_t si = 0; si < 2; si++)
            for (int random = 0; random <= 1; random++)
                for (int threads = 1; threads <= 2; threads++) {
                    double r[NUM_C][MAX_ROUNDS];
                    for (int k = 0; k < rounds; k++)
                        for (int c = 0; c < NUM_C; c++)
                            r[c][k] = sample((contender)c, write, sizes[si], random, threads, (uint64_t)k);
                    double m[NUM_C];
                    for (int c = 0; c < NUM_C; c++) {
                        m[c] = median(r[c], rounds);
                        if (m[c] <= 0)
                            rc = 1;
                    }
                    double model = 1.0 / (1.0 / m[C_PLAIN] + 1.0 / m[C_XTS]);
                    printf("{\"bench\":\"vm_disk\",\"op\":\"%s\",\"io_bytes\":%zu,\"pattern\":\"%s\","
                           "\"threads\":%d,\"%s_mbps\":%.1f,\"%s_mbps\":%.1f,\"%s_mbps\":%.1f,"
                           "\"model_mbps\":%.1f,\"ratio_vs_model\":%.3f,\"ratio_vs_plain\":%.3f,"
                           "\"xts_impl\":\"%s\",\"rounds\":%d}\n",
                           write ? "pwrite" : "pread", sizes[si], random ? "random" : "sequential", threads,
                           k_cname[C_DISK], m[C_DISK], k_cname[C_PLAIN], m[C_PLAIN], k_cname[C_XTS], m[C_XTS],
                           model, m[C_DISK] / model, m[C_DISK] / m[C_PLAIN], vmenc_xts_impl_name(g_xts), rounds);
                    fflush(stdout);
                }
out:
    if (g_disk != NULL && vmenc_disk_close(g_disk) != VMENC_OK)
        rc = 1;
    vmenc_vm_free(vm);
    vmenc_host_free(host);
    vmenc_audit_free(aud);
    vmenc_policy_free(pol);
    vmenc_keymgr_free(mgr);
    vmenc_xts_free(g_xts);
    if (g_fd >= 0)
        close(g_fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
