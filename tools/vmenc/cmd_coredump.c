/*
 * tools/vmenc/cmd_coredump.c - `vmenc coredump ...`: the host's encrypted
 * core dumps (include/vmenc/coredump.h, docs/coredump.md). The dump store is
 * WORKSPACE/coredumps unless --dir says otherwise.
 *
 * Passwords for exported dumps come from --password-file or a prompt on the
 * terminal, never from the command line or the environment.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define DUMP_CHUNK (1u << 20)

/* open_store opens (creating the default directory) the workspace's dump store. */
static int open_store(cli *c, const char *dir, vmenc_coredump_store **out) {
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char path[1200];
    if (dir != NULL) {
        snprintf(path, sizeof(path), "%s", dir);
    } else {
        snprintf(path, sizeof(path), "%s/coredumps", vmenc_workspace_dir(c->ws));
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return cli_fail(c, VMENC_E_IO, "cannot make the dump directory %s", path);
    }
    vmenc_status st = vmenc_coredump_store_open(vmenc_workspace_host(c->ws), path, out);
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot open the dump store %s", path);
}

static void out_store(out_t *o, vmenc_coredump_store *s) {
    vmenc_coredump_store_info in = {.struct_size = sizeof(in)};
    if (vmenc_coredump_store_get_info(s, &in) != VMENC_OK)
        return;
    out_bool(o, "has_host_key", in.has_host_key);
    out_str(o, "key_provider", in.key_provider);
    out_str(o, "kek_id", in.kek_id);
    out_bool(o, "rotation_pending", in.rotation_pending);
    if (in.rotation_pending) {
        out_str(o, "old_key_provider", in.old_key_provider);
        out_str(o, "old_kek_id", in.old_kek_id);
    }
    out_u64(o, "dumps", in.num_dumps);
}

static int cd_status(cli *c, args *a) {
    const char *dir = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK)
        return rc;
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_store(o, s);
    out_end(o);
    vmenc_coredump_store_free(s);
    return EXIT_OK;
}

static int host_key(cli *c, args *a, bool rotate) {
    const char *dir = NULL, *provider = NULL, *kek = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    (void)arg_value(c, a, "--provider", &provider);
    (void)arg_value(c, a, "--kek", &kek);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK)
        return rc;
    vmenc_coredump_store_info before = {.struct_size = sizeof(before)};
    vmenc_status st = vmenc_coredump_store_get_info(s, &before);
    uint32_t rewrapped = 0;
    if (st == VMENC_OK && rotate)
        st = vmenc_coredump_rotate_host_key(s, cli_principal(c), provider, kek, &rewrapped);
    else if (st == VMENC_OK)
        st = vmenc_coredump_set_host_key(s, cli_principal(c), provider ? provider : vmenc_workspace_audit_key_provider(c->ws),
                                         kek);
    if (st != VMENC_OK) {
        vmenc_coredump_store_free(s);
        return cli_fail(c, st, "cannot %s the host key", rotate ? "rotate" : "set");
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_store(o, s);
    if (rotate) {
        out_str(o, "previous_kek_id", before.kek_id);
        out_u64(o, "rewrapped", rewrapped);
    }
    out_end(o);
    vmenc_coredump_store_free(s);
    return rc;
}

static int cd_set_host_key(cli *c, args *a) { return host_key(c, a, false); }
static int cd_rotate(cli *c, args *a) { return host_key(c, a, true); }

static int cd_write(cli *c, args *a) {
    const char *dir = NULL, *source = "vmkernel", *input = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    (void)arg_value(c, a, "--source", &source);
    (void)arg_value(c, a, "--input", &input);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    FILE *in = stdin;
    if (input != NULL && strcmp(input, "-") != 0 && (in = fopen(input, "rb")) == NULL)
        return cli_fail(c, VMENC_E_NOT_FOUND, "cannot open %s", input);
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK) {
        if (in != stdin)
            fclose(in);
        return rc;
    }
    vmenc_coredump_writer *w = NULL;
    vmenc_status st = vmenc_coredump_writer_new(s, cli_principal(c), source, &w);
    vmenc_coredump_store_info si = {.struct_size = sizeof(si)};
    if (st == VMENC_E_BAD_STATE && vmenc_coredump_store_get_info(s, &si) == VMENC_OK && !si.has_host_key) {
        vmenc_coredump_store_free(s);
        if (in != stdin)
            fclose(in);
        return cli_fail(c, st, "cannot write a core dump: this host has no core-dump host key yet (set one with "
                        "'vmenc coredump set-host-key')");
    }
    char id[VMENC_COREDUMP_ID_LEN + 1] = "";
    if (st == VMENC_OK)
        snprintf(id, sizeof(id), "%s", vmenc_coredump_writer_id(w));
    uint8_t *buf = malloc(DUMP_CHUNK);
    uint64_t total = 0;
    if (st == VMENC_OK && buf == NULL)
        st = VMENC_E_NOMEM;
    while (st == VMENC_OK && !g_interrupted) {
        size_t n = fread(buf, 1, DUMP_CHUNK, in);
        if (n == 0) {
            if (ferror(in))
                st = VMENC_E_IO;
            break;
        }
        st = vmenc_coredump_write(w, buf, n);
        total += n;
    }
    if (buf != NULL)
        vmenc_memzero(buf, DUMP_CHUNK); /* crash data is sensitive */
    free(buf);
    if (in != stdin)
        fclose(in);
    if (st != VMENC_OK || g_interrupted) {
        vmenc_coredump_writer_free(w); /* abandoned: both files removed, audited */
        vmenc_coredump_store_free(s);
        if (g_interrupted)
            return cli_interrupted(c, "interrupted: the dump was abandoned and its files removed");
        return cli_fail(c, st, "cannot write a core dump");
    }
    st = vmenc_coredump_writer_finish(w);
    vmenc_coredump_store_free(s);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot finish the core dump");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "id", id);
    out_str(o, "source", source);
    out_u64(o, "bytes", total);
    out_end(o);
    return EXIT_OK;
}

static int cd_list(cli *c, args *a) {
    const char *dir = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK)
        return rc;
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_arr(o, "dumps");
    char id[VMENC_COREDUMP_ID_LEN + 1];
    vmenc_status st = VMENC_OK;
    for (uint32_t i = 0; (st = vmenc_coredump_list(s, i, id, sizeof(id))) == VMENC_OK; i++) {
        char path[1400];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/coredumps/%s.vmcore", vmenc_workspace_dir(c->ws), id);
        if (dir != NULL)
            snprintf(path, sizeof(path), "%s/%s.vmcore", dir, id);
        out_obj(o, NULL);
        out_str(o, "id", id);
        out_u64(o, "file_bytes", stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0);
        out_close(o);
    }
    vmenc_coredump_store_free(s);
    if (st != VMENC_E_NOT_FOUND) {
        out_end(o);
        return cli_fail_stderr(c, st, "cannot list the dumps");
    }
    out_end(o);
    return EXIT_OK;
}

/* copy_out streams a dump reader to stdout. */
static vmenc_status copy_out(vmenc_coredump_reader *r, uint64_t *out_total) {
    uint8_t *buf = malloc(DUMP_CHUNK);
    vmenc_status st = buf ? VMENC_OK : VMENC_E_NOMEM;
    *out_total = 0;
    while (st == VMENC_OK && !g_interrupted) {
        size_t n = 0;
        st = vmenc_coredump_read(r, buf, DUMP_CHUNK, &n);
        if (st != VMENC_OK || n == 0)
            break;
        if (fwrite(buf, 1, n, stdout) != n)
            st = VMENC_E_IO;
        *out_total += n;
    }
    fflush(stdout);
    if (buf != NULL)
        vmenc_memzero(buf, DUMP_CHUNK);
    free(buf);
    return st;
}

static int cd_read(cli *c, args *a) {
    const char *dir = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    const char *id = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (id == NULL)
        return cli_usage(c, "coredump read needs ID");
    if (c->json)
        return cli_usage(c, "coredump read writes the dump to stdout; --json is not available");
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK)
        return rc;
    vmenc_coredump_reader *r = NULL;
    vmenc_status st = vmenc_coredump_open(s, cli_principal(c), id, &r);
    uint64_t total = 0;
    if (st == VMENC_OK)
        st = copy_out(r, &total);
    vmenc_coredump_reader_free(r);
    vmenc_coredump_store_free(s);
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot read core dump %s", id);
}

static int cd_export(cli *c, args *a) {
    const char *dir = NULL, *pwfile = NULL, *ops_s = NULL, *mem_s = NULL;
    (void)arg_value(c, a, "--dir", &dir);
    (void)arg_value(c, a, "--password-file", &pwfile);
    (void)arg_value(c, a, "--kdf-ops", &ops_s);
    (void)arg_value(c, a, "--kdf-memory", &mem_s);
    const char *id = arg_positional(a), *out_dir = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t ops = 0, mem = 0;
    if (id == NULL || out_dir == NULL)
        return cli_usage(c, "coredump export needs ID and DIR");
    if ((ops_s && !parse_size(ops_s, &ops)) || (mem_s && !parse_size(mem_s, &mem)))
        return cli_usage(c, "bad --kdf-ops or --kdf-memory");
    vmenc_coredump_store *s = NULL;
    int rc = open_store(c, dir, &s);
    if (rc != EXIT_OK)
        return rc;
    char pw[VMENC_COREDUMP_PASSWORD_MAX + 1];
    size_t pw_len = 0;
    if (!cli_secret(c, "export password", "--password-file", pwfile, true, pw, sizeof(pw), &pw_len)) {
        vmenc_coredump_store_free(s);
        return EXIT_USAGE;
    }
    vmenc_coredump_export_options eo = {.struct_size = sizeof(eo), .principal = cli_principal(c), .dump_id = id,
                                        .out_dir = out_dir, .password = (const uint8_t *)pw,
                                        .password_len = pw_len, .kdf_ops = ops, .kdf_mem_bytes = mem};
    vmenc_status st = vmenc_coredump_export(s, &eo);
    vmenc_memzero(pw, sizeof(pw));
    vmenc_coredump_store_free(s);
    if (st == VMENC_E_WEAK_KEY)
        return cli_fail(c, st,
                        "cannot export core dump %s: the export password must be at least %u characters and "
                        "Argon2id at least %u passes x %llu MiB (--kdf-ops, --kdf-memory; default 3 x 256M)",
                        id, VMENC_COREDUMP_PASSWORD_MIN, VMENC_COREDUMP_KDF_OPS_MIN,
                        (unsigned long long)(VMENC_COREDUMP_KDF_MEM_MIN >> 20));
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot export core dump %s to %s", id, out_dir);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "id", id);
    out_str(o, "dir", out_dir);
    out_arr(o, "files");
    char f[128];
    snprintf(f, sizeof(f), "%s.vmcore", id);
    out_str(o, NULL, f);
    snprintf(f, sizeof(f), "%s.vmcore-pw", id);
    out_str(o, NULL, f);
    out_close(o);
    out_end(o);
    return EXIT_OK;
}

/* coredump open DIR ID: an exported dump with its password alone - no
 * workspace, key provider or policy (holding the password is the
 * authorization). */
static int cd_open(cli *c, args *a) {
    const char *pwfile = NULL;
    (void)arg_value(c, a, "--password-file", &pwfile);
    const char *dir = arg_positional(a), *id = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (dir == NULL || id == NULL)
        return cli_usage(c, "coredump open needs DIR and ID");
    if (c->json)
        return cli_usage(c, "coredump open writes the dump to stdout; --json is not available");
    char pw[VMENC_COREDUMP_PASSWORD_MAX + 1];
    size_t pw_len = 0;
    if (!cli_secret(c, "export password", "--password-file", pwfile, false, pw, sizeof(pw), &pw_len))
        return EXIT_USAGE;
    vmenc_coredump_reader *r = NULL;
    vmenc_status st = vmenc_coredump_open_exported(dir, id, (const uint8_t *)pw, pw_len, &r);
    vmenc_memzero(pw, sizeof(pw));
    uint64_t total = 0;
    if (st == VMENC_OK)
        st = copy_out(r, &total);
    vmenc_coredump_reader_free(r);
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot open exported dump %s in %s", id, dir);
}

const verb_def coredump_verbs[] = {
    {"status", cd_status, "[--dir DIR]", "the host key and how many dumps the store holds",
     "The store is WORKSPACE/coredumps unless --dir DIR (every verb but 'open' takes --dir).\n"},
    {"set-host-key", cd_set_host_key, "[--provider ALIAS] [--kek ID]", "give the host its core-dump key",
     "A new KEK in ALIAS (default: the workspace's own provider) unless --kek names one.\n"
     "Needs Cryptographer.RegisterHost on the host; switches the host to encryption mode.\n"},
    {"rotate-host-key", cd_rotate, "[--provider ALIAS] [--kek ID]", "move to a new host key, re-wrapping every dump's key",
     "Dumps are not re-encrypted. Resumes an interrupted rotation. Same privilege as set-host-key.\n"},
    {"write", cd_write, "[--source NAME] [--input FILE] < DUMP", "encrypt a core dump from stdin (or FILE)",
     "No user privilege (the host writes its own crash data); the host must be in encryption\n"
     "mode with a host key. --source: what crashed (default vmkernel). JSON: id, source, bytes.\n"},
    {"list", cd_list, "", "the complete dumps of the store", ""},
    {"read", cd_read, "ID > FILE", "decrypt a dump to stdout (authenticated chunk by chunk)",
     "Needs Cryptographer.ManageKeys: a host dump may hold every key the host had.\n"},
    {"export", cd_export, "ID DIR [--password-file F] [--kdf-ops N --kdf-memory SIZE]", "a support-bundle copy under a password",
     "Writes DIR/ID.vmcore (as is) and DIR/ID.vmcore-pw (the dump key under Argon2id(password)).\n"
     "Password from --password-file or a prompt (asked twice); never on the command line.\n"
     "Argon2id default: 3 passes, 256M. Needs Cryptographer.ManageKeys.\n"
     "Refused (exit 2) below a 12-character password or 2 passes x 64M of Argon2id.\n"},
    {"open", cd_open, "DIR ID [--password-file F] > FILE", "decrypt an exported dump with its password",
     "Needs no workspace: the password is the authorization.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
