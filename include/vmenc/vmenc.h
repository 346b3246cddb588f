/*
 * vmenc/vmenc.h - umbrella header: includes every public vmenc header.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_VMENC_H
#define VMENC_VMENC_H

#include "vmenc/common.h"
#include "vmenc/core.h"
#include "vmenc/xts.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/kms_file.h"
#include "vmenc/kms_kmip.h"
#include "vmenc/kms_pkcs11.h"
#include "vmenc/policy.h"
#include "vmenc/audit.h"
#include "vmenc/vm.h"
#include "vmenc/coredump.h"
#include "vmenc/migration.h"
#include "vmenc/workspace.h"
#include "vmenc/cluster.h"

#endif /* VMENC_VMENC_H */
