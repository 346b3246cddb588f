/*
 * bench/bench_convert.c - in-place conversion throughput against a durable
 * copy of the same file on the same file system, in the same run:
 *
 *   bench_convert [--mib M] [--segment-mib S]
 *
 * A disk of M MiB (default 1024) full of data is encrypted in place and
 * then deep-rekeyed (every byte re-encrypted under a new DEK), with the
 * host's fsyncs on (durable, like the baseline). The baseline is
 * `dd if=extent of=copy bs=4M conv=fsync`: read, write and flush every byte
 * once, run right before and right after each conversion (the mean is the
 * baseline). ratio_vs_dd = conversion rate / dd rate (target >= 0.7: a protocol
 * that writes every byte twice cannot reach it). Meanwhile one thread
 * issues a 4 KiB write at a random offset every millisecond, as a guest
 * would; its latency (p50, p99, max) is what the guest sees.
 * One JSON line per conversion.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define MAX_SAMPLES 1000000

static vmenc_disk *g_disk;
static uint64_t g_cap;
static atomic_int g_stop;
static double *g_lat;
static size_t g_num_lat;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *guest(void *p) {
    (void)p;
    uint8_t buf[4096];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    memset(buf, 0xab, sizeof(buf));
    while (!atomic_load(&g_stop) && g_num_lat < MAX_SAMPLES) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint64_t off = (seed % (g_cap / 4096)) * 4096;
        double t0 = now_s();
        if (vmenc_disk_pwrite(g_disk, off, buf, sizeof(buf)) != VMENC_OK)
            break;
        g_lat[g_num_lat++] = (now_s() - t0) * 1e6;
        usleep(1000);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static vmenc_status count_cb(void *ctx, const vmenc_audit_event *ev, const char *json, size_t len) {
    (*(size_t *)ctx)++;
    return VMENC_OK;
}

/* convert runs one conversion with the guest thread; returns MB/s. */
static double convert(vmenc_convert_kind kind, uint64_t seg, double *p50, double *p99, double *max) {
    vmenc_convert_options co = {.struct_size = sizeof(co), .segment_bytes = seg};
    if (vmenc_disk_convert_begin(g_disk, "admin", kind, &co) != VMENC_OK)
        return -1;
    g_num_lat = 0;
    atomic_store(&g_stop, 0);
    pthread_t t;
    pthread_create(&t, NULL, guest, NULL);
    double t0 = now_s();
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    vmenc_status s = VMENC_OK;
    while (s == VMENC_OK && !p.done)
        s = vmenc_disk_convert_step(g_disk, (uint64_t)64 << 20, &p);
    double dt = now_s() - t0;
    atomic_store(&g_stop, 1);
    pthread_join(t, NULL);
    if (s != VMENC_OK)
        return -1;
    qsort(g_lat, g_num_lat, sizeof(double), cmp_double);
    *p50 = g_num_lat ? g_lat[g_num_lat / 2] : 0;
    *p99 = g_num_lat ? g_lat[g_num_lat * 99 / 100] : 0;
    *max = g_num_lat ? g_lat[g_num_lat - 1] : 0;
    return (double)g_cap / dt / 1e6;
}

static double dd_copy(const char *from, const char *to) {
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "dd if='%s' of='%s' bs=4M conv=fsync status=none", from, to);
    double t0 = now_s();
    int rc = system(cmd);
    double dt = now_s() - t0;
    unlink(to);
    return rc == 0 ? (double)g_cap / dt / 1e6 : -1;
}

int main(int argc, char **argv) {
    uint64_t mib = 1024, seg_mib = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mib") == 0)
            mib = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--segment-mib") == 0)
            seg_mib = strtoull(argv[i + 1], NULL, 10);
    }
    if (mib < 16 || seg_mib < 1 || seg_mib > 1024) {
        fprintf(stderr, "usage: bench_convert [--mib >=16] [--segment-mib 1..1024]\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/var/tmp";
    char dir[512], ks[600], home[600], ext[700], copy[700];
    snprintf(dir, sizeof(dir), "%s/vmenc-bench-convert-XXXXXX", tmp);
    g_lat = malloc(MAX_SAMPLES * sizeof(double));
    if (vmenc_init() != VMENC_OK || mkdtemp(dir) == NULL || g_lat == NULL)
        return 1;
    snprintf(ks, sizeof(ks), "%s/keystore", dir);
    snprintf(home, sizeof(home), "%s/bench", dir);
    snprintf(ext, sizeof(ext), "%s/bench_0-flat.vmdk", home);
    snprintf(copy, sizeof(copy), "%s/copy", dir);
    static const char *const opts[] = {"create=1", "kdf_ops=1", "kdf_mem_kib=8192", NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = ks, .options = opts,
                                     .secret = (const uint8_t *)"bench", .secret_len = 5};
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "home", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME, .key_provider = "kms"};
    vmenc_keymgr *mgr = NULL;
    vmenc_policy *pol = NULL;
    vmenc_audit *aud = NULL;
    vmenc_host *host = NULL;
    vmenc_vm *vm = NULL;
    size_t events = 0;
    char id[VMENC_DISK_ID_MAX + 1];
    if (vmenc_keymgr_new(NULL, &mgr) || vmenc_keymgr_add_cluster(mgr, "kms", &cfg, 1, NULL) ||
        vmenc_policy_new("root", &pol) || vmenc_policy_add_object(pol, "esx", VMENC_OBJ_HOST, "root") ||
        vmenc_policy_add_object(pol, "vms", VMENC_OBJ_FOLDER, "root") || vmenc_policy_add_user(pol, "admin") ||
        vmenc_policy_grant(pol, "admin", "root", VMENC_ROLE_ADMIN, 1) || vmenc_policy_set_storage_policy(pol, &sp) ||
        vmenc_audit_new(&aud) || vmenc_audit_add_callback(aud, count_cb, &events)) {
        fprintf(stderr, "bench_convert: setup failed\n");
        return 1;
    }
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = "esx", .keymgr = mgr, .policy = pol,
                             .audit = aud};
    vmenc_vm_create_options vo = {.struct_size = sizeof(vo), .principal = "admin", .home_dir = home,
                                  .name = "bench", .folder = "vms", .storage_policy = "home"};
    vmenc_disk_create_options dopt = {.struct_size = sizeof(dopt), .capacity = mib << 20, .sector_size = 512};
    if (vmenc_host_new(&ho, &host) || vmenc_vm_create(host, &vo, &vm) ||
        vmenc_vm_add_disk(vm, "admin", &dopt, id, sizeof(id)) || vmenc_disk_open(vm, "admin", id, 0, &g_disk)) {
        fprintf(stderr, "bench_convert: VM setup failed\n");
        return 1;
    }
    g_cap = mib << 20;
    uint8_t *buf = malloc(4 << 20);
    for (size_t i = 0; i < (4u << 20); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (uint64_t off = 0; off < g_cap; off += 4 << 20)
        if (vmenc_disk_pwrite(g_disk, off, buf, 4 << 20) != VMENC_OK)
            return 1;
    free(buf);
    if (vmenc_disk_flush(g_disk) != VMENC_OK)
        return 1;
    fprintf(stderr, "bench_convert: %llu MiB disk, segment %llu MiB, in %s\n", (unsigned long long)mib,
            (unsigned long long)seg_mib, dir);
    int rc = 0;
    static const vmenc_convert_kind kinds[2] = {VMENC_CONVERT_ENCRYPT, VMENC_CONVERT_REKEY};
    static const char *const names[2] = {"encrypt", "deep_rekey"};
    for (int k = 0; k < 2; k++) {
        /* the device's speed drifts (writeback of earlier work, other
         * tenants): copy right before and right after, and use the mean */
        double dd_before = dd_copy(ext, copy);
        double p50 = 0, p99 = 0, max = 0;
        double mbps = convert(kinds[k], seg_mib << 20, &p50, &p99, &max);
        double dd_after = dd_copy(ext, copy);
        double dd = (dd_before + dd_after) / 2;
        if (dd_before <= 0 || dd_after <= 0)
            dd = -1;
        if (mbps <= 0 || dd <= 0) {
            rc = 1;
            continue;
        }
        printf("{\"bench\":\"convert\",\"op\":\"%s\",\"mib\":%llu,\"segment_mib\":%llu,\"convert_mbps\":%.1f,"
               "\"dd_conv_fsync_mbps\":%.1f,\"dd_before_mbps\":%.1f,\"dd_after_mbps\":%.1f,\"ratio_vs_dd\":%.3f,\"guest_write_4k_p50_us\":%.1f,"
               "\"guest_write_4k_p99_us\":%.1f,\"guest_write_4k_max_us\":%.1f,\"guest_writes\":%zu}\n",
               names[k], (unsigned long long)mib, (unsigned long long)seg_mib, mbps, dd, dd_before, dd_after, mbps / dd, p50,
               p99, max,
               g_num_lat);
        fflush(stdout);
    }
    if (vmenc_disk_close(g_disk) != VMENC_OK)
        rc = 1;
    vmenc_vm_free(vm);
    vmenc_host_free(host);
    vmenc_audit_free(aud);
    vmenc_policy_free(pol);
    vmenc_keymgr_free(mgr);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    free(g_lat);
    return rc;
}
