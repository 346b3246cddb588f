/*
 * integrations/nbdkit/control_server.h - the plugin's control endpoint: a
 * Unix socket through which `vmenc vm encrypt|decrypt|rekey --deep` asks
 * the process serving a VM's disk to convert it online, through the disk
 * handle it has open, while guest I/O goes on (docs/nbdkit.md, "Control
 * endpoint"; wire format integrations/control/ctl_proto.h).
 *
 * Safety rule: a caller is admitted only if SO_PEERCRED says it runs as
 * this process's user or as root, and what it asks is then authorized and
 * audited by the library as the principal it names, exactly as the same
 * call made locally would be - the endpoint decides nothing itself.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_NBDKIT_CONTROL_SERVER_H
#define VMENC_NBDKIT_CONTROL_SERVER_H

#include "vmenc/vmenc.h"

typedef struct ctl_server ctl_server;

/* ctl_server_open binds the endpoint of |vm| (open in |ws|, whose disk the
 * plugin serves read-write): at |path| if given, else at
 * WORKSPACE/run/<VM-UUID>.ctl. A live endpoint already there (another
 * process serving a disk of this VM) is not replaced: returns 1 and no
 * server. 0 on success, -1 after nbdkit_error on failure. No thread starts
 * yet (nbdkit may still fork). */
int ctl_server_open(vmenc_workspace *ws, vmenc_vm *vm, const char *workspace_dir, const char *path,
                    ctl_server **out);

/* ctl_server_start starts accepting (call in .after_fork). -1 on failure. */
int ctl_server_start(ctl_server *s);

/* ctl_server_close stops a running conversion between segments (it stays
 * resumable), waits for it and for every connection, removes the socket
 * and frees. NULL is allowed. Call before the disk is closed. */
void ctl_server_close(ctl_server *s);

#endif /* VMENC_NBDKIT_CONTROL_SERVER_H */
