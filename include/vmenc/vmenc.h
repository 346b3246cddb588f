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
#if __has_include("vmenc/keys.h")
#include "vmenc/keys.h"
#endif
#if __has_include("vmenc/kms.h")
#include "vmenc/kms.h"
#endif
#if __has_include("vmenc/policy.h")
#include "vmenc/policy.h"
#endif
#if __has_include("vmenc/audit.h")
#include "vmenc/audit.h"
#endif

#endif /* VMENC_VMENC_H */
