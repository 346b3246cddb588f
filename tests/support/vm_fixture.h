/*
 * tests/support/vm_fixture.h - a host for VM-layer tests and benchmarks: a
 * temp datastore, a key manager with file-keystore clusters "kms-a" and
 * "kms-b" (each behind the fault proxy, so a test can take the KMS down), a
 * policy (root "vcenter" > "dc1" > host "esx01"/"esx02", folder "vms"; alice
 * Admin, bob NoCryptoAdmin, carol ReadOnly; storage policies "encrypted",
 * "encrypted-b", "home-only" and "plain"), and an audit dispatcher whose
 * callback counts events and keeps the JSON of every one.
 *
 * Header-only (static functions) so tests and benchmarks share it.
 */
#ifndef VMENC_TESTS_VM_FIXTURE_H
#define VMENC_TESTS_VM_FIXTURE_H

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_provider.h"
#include "vmenc/vmenc.h"

#define VMFIX_MAX_LOG (1u << 20)

typedef struct vmfix {
    char dir[PATH_MAX];
    char ks_a[PATH_MAX + 32], ks_b[PATH_MAX + 32];
    vmenc_keymgr *mgr;
    fault_provider *fault_a, *fault_b; /* the proxies in front of the keystores */
    vmenc_policy *policy;
    vmenc_audit *audit;
    vmenc_host *host;
    uint32_t host_flags;
    pthread_mutex_t mu;
    size_t num_events, num_success, num_denied, num_failed;
    char *log; /* every event's JSON, one per line */
    size_t log_len;
} vmfix;

static vmenc_status vmfix_audit_cb(void *ctx, const vmenc_audit_event *ev, const char *json, size_t json_len) {
    vmfix *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->num_events++;
    if (ev->outcome == VMENC_AUDIT_SUCCESS)
        f->num_success++;
    else if (ev->outcome == VMENC_AUDIT_DENIED)
        f->num_denied++;
    else
        f->num_failed++;
    if (f->log_len + json_len + 2 < VMFIX_MAX_LOG) {
        memcpy(f->log + f->log_len, json, json_len);
        f->log_len += json_len;
        f->log[f->log_len++] = '\n';
        f->log[f->log_len] = '\0';
    }
    pthread_mutex_unlock(&f->mu);
    return VMENC_OK;
}

/* vmfix_count_events counts logged events whose JSON contains every one of
 * the NULL-terminated needles. */
__attribute__((unused)) static size_t vmfix_count_events(vmfix *f, const char *const *needles) {
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (char *line = f->log; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        *end = '\0';
        bool all = true;
        for (size_t i = 0; needles[i] != NULL; i++)
            all = all && strstr(line, needles[i]) != NULL;
        n += all;
        *end = '\n';
        line = end + 1;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

static vmenc_status vmfix_add_cluster(vmfix *f, const char *alias, const char *keystore, fault_provider **out) {
    static const char *const opts[] = {"create=1", "kdf_ops=1", "kdf_mem_kib=8192", NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = keystore,
                                     .options = opts, .secret = (const uint8_t *)"test passphrase",
                                     .secret_len = 15};
    vmenc_kms_provider *inner = NULL, *proxy = NULL;
    vmenc_status s = vmenc_kms_provider_new_builtin(&cfg, &inner);
    if (s != VMENC_OK)
        return s;
    if ((s = fault_proxy_new(inner, &proxy)) != VMENC_OK) {
        vmenc_kms_provider_free(inner);
        return s;
    }
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    if ((s = vmenc_kms_cluster_new(alias, &co, &c)) != VMENC_OK) {
        vmenc_kms_provider_free(proxy);
        return s;
    }
    if ((s = vmenc_kms_cluster_take_endpoint(c, "keystore", proxy)) != VMENC_OK) {
        vmenc_kms_provider_free(proxy);
        vmenc_kms_cluster_free(c);
        return s;
    }
    if ((s = vmenc_keymgr_take_cluster(f->mgr, c)) != VMENC_OK) {
        vmenc_kms_cluster_free(c);
        return s;
    }
    *out = as_fault(proxy);
    return VMENC_OK;
}

/* vmfix_new_keymgr replaces the key manager (a restarted host: empty
 * cache) over the same keystores. The host must be remade after. */
__attribute__((unused)) static vmenc_status vmfix_new_keymgr(vmfix *f) {
    vmenc_keymgr_free(f->mgr);
    f->mgr = NULL;
    vmenc_status s = vmenc_keymgr_new(NULL, &f->mgr);
    if (s == VMENC_OK)
        s = vmfix_add_cluster(f, "kms-a", f->ks_a, &f->fault_a);
    if (s == VMENC_OK)
        s = vmfix_add_cluster(f, "kms-b", f->ks_b, &f->fault_b);
    return s;
}

/* vmfix_new_host (re)makes f->host on |host_id| with the current key
 * manager. */
__attribute__((unused)) static vmenc_status vmfix_new_host(vmfix *f, const char *host_id) {
    vmenc_host_free(f->host);
    f->host = NULL;
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = host_id, .keymgr = f->mgr,
                             .policy = f->policy, .audit = f->audit, .kms_timeout_ms = 5000,
                             .flags = f->host_flags};
    return vmenc_host_new(&ho, &f->host);
}

static vmenc_status vmfix_policy(vmfix *f) {
    vmenc_policy *p = NULL;
    vmenc_status s = vmenc_policy_new("vcenter", &p);
    if (s != VMENC_OK)
        return s;
#define P(call)                                \
    do {                                       \
        if ((s = (call)) != VMENC_OK)          \
            goto out;                          \
    } while (0)
    P(vmenc_policy_add_object(p, "dc1", VMENC_OBJ_DATACENTER, "vcenter"));
    P(vmenc_policy_add_object(p, "esx01", VMENC_OBJ_HOST, "dc1"));
    P(vmenc_policy_add_object(p, "esx02", VMENC_OBJ_HOST, "dc1"));
    P(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc1"));
    P(vmenc_policy_add_object(p, "other", VMENC_OBJ_FOLDER, "dc1"));
    P(vmenc_policy_add_user(p, "alice"));
    P(vmenc_policy_add_user(p, "bob"));
    P(vmenc_policy_add_user(p, "carol"));
    P(vmenc_policy_grant(p, "alice", "vcenter", VMENC_ROLE_ADMIN, 1));
    P(vmenc_policy_grant(p, "bob", "vcenter", VMENC_ROLE_NO_CRYPTO_ADMIN, 1));
    P(vmenc_policy_grant(p, "carol", "vcenter", VMENC_ROLE_READ_ONLY, 1));
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "encrypted", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = "kms-a", .migration = VMENC_MIGRATION_REQUIRED};
    P(vmenc_policy_set_storage_policy(p, &sp));
    sp.name = "encrypted-b";
    sp.key_provider = "kms-b";
    P(vmenc_policy_set_storage_policy(p, &sp));
    sp.name = "home-only";
    sp.key_provider = "kms-a";
    sp.file_classes = VMENC_FILE_VM_HOME;
    P(vmenc_policy_set_storage_policy(p, &sp));
    vmenc_storage_policy_spec plain = {.struct_size = sizeof(plain), .name = "plain", .encrypt = 0,
                                       .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    P(vmenc_policy_set_storage_policy(p, &plain));
#undef P
out:
    if (s != VMENC_OK) {
        vmenc_policy_free(p);
        return s;
    }
    f->policy = p;
    return VMENC_OK;
}

/* vmfix_setup makes everything; |host_flags| e.g. VMENC_HOST_NO_SYNC. */
__attribute__((unused)) static vmenc_status vmfix_setup(vmfix *f, uint32_t host_flags) {
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->host_flags = host_flags;
    vmenc_status s = vmenc_init();
    if (s != VMENC_OK)
        return s;
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(f->dir, sizeof(f->dir), "%s/vmenc-vm-XXXXXX", tmp);
    if (mkdtemp(f->dir) == NULL)
        return VMENC_E_IO;
    snprintf(f->ks_a, sizeof(f->ks_a), "%s/keystore-a", f->dir);
    snprintf(f->ks_b, sizeof(f->ks_b), "%s/keystore-b", f->dir);
    f->log = calloc(1, VMFIX_MAX_LOG);
    if (f->log == NULL)
        return VMENC_E_NOMEM;
    if ((s = vmfix_new_keymgr(f)) != VMENC_OK || (s = vmfix_policy(f)) != VMENC_OK ||
        (s = vmenc_audit_new(&f->audit)) != VMENC_OK ||
        (s = vmenc_audit_add_callback(f->audit, vmfix_audit_cb, f)) != VMENC_OK)
        return s;
    return vmfix_new_host(f, "esx01");
}

__attribute__((unused)) static void vmfix_teardown(vmfix *f) {
    vmenc_host_free(f->host);
    vmenc_audit_free(f->audit);
    vmenc_policy_free(f->policy);
    vmenc_keymgr_free(f->mgr);
    free(f->log);
    if (f->dir[0] != '\0' && getenv("VMENC_KEEP_TMP") == NULL) {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", f->dir);
    }
    pthread_mutex_destroy(&f->mu);
}

/* vmfix_path writes "<dir>/<rel>". */
__attribute__((unused)) static const char *vmfix_path(const vmfix *f, const char *rel, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", f->dir, rel);
    return buf;
}

/* vmfix_create makes VM |name| in "<dir>/<name>" with |policy| (NULL
 * plain) as |who|. */
__attribute__((unused)) static vmenc_status vmfix_create(vmfix *f, const char *who, const char *name,
                                                         const char *policy, vmenc_vm **out) {
    char home[PATH_MAX + 80];
    snprintf(home, sizeof(home), "%s/%s", f->dir, name);
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = who, .home_dir = home, .name = name,
                                 .folder = "vms", .storage_policy = policy, .memory_bytes = 1 << 20};
    return vmenc_vm_create(f->host, &o, out);
}

/* vmfix_add_disk adds a disk of |capacity| bytes and returns its ID. */
__attribute__((unused)) static vmenc_status vmfix_add_disk(vmfix *f, vmenc_vm *vm, const char *who,
                                                           uint64_t capacity, uint32_t sector_size,
                                                           char id[VMENC_DISK_ID_MAX + 1]) {
    vmenc_disk_create_options o = {.struct_size = sizeof(o), .capacity = capacity, .sector_size = sector_size};
    return vmenc_vm_add_disk(vm, who, &o, id, VMENC_DISK_ID_MAX + 1);
}

/* vmfix_vmx_path writes "<dir>/<name>/<name>.vmx". */
__attribute__((unused)) static const char *vmfix_vmx_path(const vmfix *f, const char *name, char *buf,
                                                          size_t cap) {
    snprintf(buf, cap, "%s/%s/%s.vmx", f->dir, name, name);
    return buf;
}

/* vmfix_read_file reads a whole file into a new buffer (NUL appended). */
__attribute__((unused)) static uint8_t *vmfix_read_file(const char *path, size_t *out_len) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    if (b != NULL) {
        b[n] = 0;
        *out_len = (size_t)n;
    }
    return b;
}

/* vmfix_write_file replaces a whole file. */
__attribute__((unused)) static int vmfix_write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (fp == NULL)
        return -1;
    int ok = fwrite(data, 1, len, fp) == len;
    return (fclose(fp) == 0 && ok) ? 0 : -1;
}

/* vmfix_contains: does |hay| contain |needle|? */
__attribute__((unused)) static bool vmfix_contains(const uint8_t *hay, size_t hay_len, const uint8_t *needle,
                                                   size_t needle_len) {
    for (size_t i = 0; needle_len <= hay_len && i <= hay_len - needle_len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, needle_len) == 0)
            return true;
    return false;
}

#endif /* VMENC_TESTS_VM_FIXTURE_H */
