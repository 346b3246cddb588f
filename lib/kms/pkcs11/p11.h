/*
 * lib/kms/pkcs11/p11.h - private to the PKCS#11 provider: the PKCS#11
 * header (GNU naming, which defines no lower-case macros that would clash
 * with our identifiers) and the module loader.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_PKCS11_P11_H
#define VMENC_LIB_KMS_PKCS11_P11_H

#define CRYPTOKI_GNU 1
#include <p11-kit-1/p11-kit/pkcs11.h>

#include "core/internal.h"

/* A loaded module. Several providers may load the same module; C_Initialize
 * is process-wide, so a registry counts the vmenc users of each function
 * list and C_Finalize runs only when the last one that vmenc initialised
 * goes away (never if someone else had initialised the module first). */
typedef struct vmenc_p11_module {
    void *dl;                        /* our dlopen handle */
    struct ck_function_list *fl;     /* the module's function list */
    struct vmenc_p11_registry_entry *entry;
} vmenc_p11_module;

/* vmenc_p11_module_open loads |path| and initialises it (once per process).
 * Fails with VMENC_E_INVALID_ARG (not an absolute path),
 * VMENC_E_KMS_UNAVAILABLE (cannot load), VMENC_E_KMS_PROTOCOL (not a
 * PKCS#11 v2/v3 module) or the C_Initialize failure. */
VMENC_INTERNAL vmenc_status vmenc_p11_module_open(const char *path, vmenc_p11_module *out);

/* vmenc_p11_module_is_sole_user reports whether |m| is the only vmenc user
 * of its module and vmenc initialised it (so logging out hurts nobody). */
VMENC_INTERNAL bool vmenc_p11_module_is_sole_user(const vmenc_p11_module *m);

/* vmenc_p11_module_close drops |m|'s reference: C_Finalize if it was the
 * last vmenc user and vmenc initialised the module, then dlclose. */
VMENC_INTERNAL void vmenc_p11_module_close(vmenc_p11_module *m);

#endif /* VMENC_LIB_KMS_PKCS11_P11_H */
