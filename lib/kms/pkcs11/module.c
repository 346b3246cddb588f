/*
 * lib/kms/pkcs11/module.c - loading a PKCS#11 module and sharing its
 * process-wide initialisation between providers.
 *
 * C_Initialize/C_Finalize act on the whole process, not on a caller: if two
 * providers use one module and the first to go called C_Finalize, the other's
 * sessions would die under it. So vmenc keeps the one piece of global state
 * the standard forces on it: a registry of initialised function lists with a
 * count of vmenc users. A module someone else initialised first
 * (CKR_CRYPTOKI_ALREADY_INITIALIZED) is used but never finalised by vmenc.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kms/pkcs11/p11.h"
#include "kms/pkcs11/pkcs11_provider.h"

struct vmenc_p11_registry_entry {
    struct vmenc_p11_registry_entry *next;
    struct ck_function_list *fl;
    unsigned refs;
    bool we_initialized;
    pid_t pid;        /* the process that initialised it */
};

static pthread_mutex_t g_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vmenc_p11_registry_entry *g_registry;

static struct vmenc_p11_registry_entry *registry_find(struct ck_function_list *fl) {
    /* Entries inherited over fork() belong to the parent: PKCS#11 wants a
     * child to C_Initialize again, so they are dropped here (the parent's
     * providers are unusable in the child anyway). */
    pid_t self = getpid();
    for (struct vmenc_p11_registry_entry **pp = &g_registry; *pp != NULL;) {
        struct vmenc_p11_registry_entry *e = *pp;
        if (e->pid != self) {
            *pp = e->next;
            free(e);
            continue;
        }
        if (e->fl == fl)
            return e;
        pp = &e->next;
    }
    return NULL;
}

/* Called with g_registry_mu held. */
static vmenc_status registry_acquire(struct ck_function_list *fl, struct vmenc_p11_registry_entry **out) {
    struct vmenc_p11_registry_entry *e = registry_find(fl);
    if (e != NULL) {
        e->refs++;
        *out = e;
        return VMENC_OK;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return VMENC_E_NOMEM;
    /* Native OS locking: the module may be called from several threads. */
    struct ck_c_initialize_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    ck_rv_t rv = fl->C_Initialize(&args);
    if (rv == CKR_OK) {
        e->we_initialized = true;
    } else if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        e->we_initialized = false;
    } else {
        free(e);
        /* CKR_CANT_LOCK: the module cannot do multi-threaded access. */
        return rv == CKR_CANT_LOCK ? VMENC_E_UNSUPPORTED : vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
    }
    e->fl = fl;
    e->refs = 1;
    e->pid = getpid();
    e->next = g_registry;
    g_registry = e;
    *out = e;
    return VMENC_OK;
}

vmenc_status vmenc_p11_module_open(const char *path, vmenc_p11_module *out) {
    VMENC_ENSURE_REF(path);
    VMENC_ENSURE_REF(out);
    /* An absolute path only: a bare name would be looked up along the
     * library search path, which is code the configuration did not name. */
    VMENC_ENSURE(path[0] == '/', VMENC_E_INVALID_ARG);

    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL)
        return VMENC_E_KMS_UNAVAILABLE;
    ck_rv_t (*get_list)(struct ck_function_list **) = NULL;
    void *sym = dlsym(dl, "C_GetFunctionList");
    memcpy(&get_list, &sym, sizeof(sym)); /* object-to-function pointer, the POSIX way */
    struct ck_function_list *fl = NULL;
    if (get_list == NULL || get_list(&fl) != CKR_OK || fl == NULL || fl->version.major < 2 ||
        fl->C_Initialize == NULL) {
        dlclose(dl);
        return VMENC_E_KMS_PROTOCOL;
    }

    struct vmenc_p11_registry_entry *e = NULL;
    pthread_mutex_lock(&g_registry_mu);
    vmenc_status st = registry_acquire(fl, &e);
    pthread_mutex_unlock(&g_registry_mu);
    if (st != VMENC_OK) {
        dlclose(dl);
        return st;
    }
    out->dl = dl;
    out->fl = fl;
    out->entry = e;
    return VMENC_OK;
}

bool vmenc_p11_module_is_sole_user(const vmenc_p11_module *m) {
    pthread_mutex_lock(&g_registry_mu);
    bool sole = m->entry != NULL && m->entry->refs == 1 && m->entry->we_initialized;
    pthread_mutex_unlock(&g_registry_mu);
    return sole;
}

void vmenc_p11_module_close(vmenc_p11_module *m) {
    if (m == NULL || m->entry == NULL)
        return;
    pthread_mutex_lock(&g_registry_mu);
    struct vmenc_p11_registry_entry *e = m->entry;
    if (--e->refs == 0) {
        if (e->we_initialized)
            (void)e->fl->C_Finalize(NULL);
        for (struct vmenc_p11_registry_entry **pp = &g_registry; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        }
        free(e);
    }
    pthread_mutex_unlock(&g_registry_mu);
    dlclose(m->dl);
    m->dl = NULL;
    m->fl = NULL;
    m->entry = NULL;
}
