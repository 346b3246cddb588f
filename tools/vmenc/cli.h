/*
 * tools/vmenc/cli.h - shared pieces of the vmenc command-line tool: the
 * command table, argument helpers, output (human or JSON), exit codes,
 * progress and interruption. The tool uses the public API only.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_TOOLS_CLI_H
#define VMENC_TOOLS_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <vmenc/vmenc.h>

/* Exit codes (docs/cli.md). Stable. */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,      /* a check the command ran did not pass (demo) */
    EXIT_USAGE = 2,       /* bad command line or request */
    EXIT_DENIED = 3,      /* denied by policy (or host encryption mode) */
    EXIT_AUTH = 4,        /* authentication / integrity / crypto failure, wrong passphrase, tampered audit log */
    EXIT_UNAVAILABLE = 5, /* key provider unavailable, VM locked */
    EXIT_NOT_FOUND = 6,   /* VM, disk, key, provider, user or object not found */
    EXIT_IO = 7,          /* I/O error, no space, file locked by another process */
    EXIT_CONFIG = 8,      /* bad workspace configuration or malformed file */
    EXIT_INTERNAL = 10,   /* a bug */
    EXIT_INTERRUPTED = 130 /* Ctrl-C */
};

typedef enum { PROGRESS_AUTO, PROGRESS_ALWAYS, PROGRESS_NEVER } progress_mode;

/* The remaining arguments of a command; helpers consume them. */
typedef struct args {
    int argc;
    char **argv;  /* NULL entries are consumed */
} args;

typedef struct cli {
    const char *workspace;
    const char *user;
    const char *passphrase_file;
    bool json;
    bool quiet;
    progress_mode progress;
    const char *noun, *verb;  /* for messages and JSON "command" */
    vmenc_workspace *ws;      /* opened on demand by cli_open */
    uint32_t wait_ms;         /* --wait SECONDS: how long to wait for another process's lock */
    bool yes;                 /* --yes, -y, -q/--batch-mode: no confirmation question */
    const char *user_from;    /* where --user came from: "--user", "$VMENC_USER", "$USER", "default" */
} cli;

/* The default of --wait, in seconds. */
#define CLI_DEFAULT_WAIT_S 10u

extern volatile sig_atomic_t g_interrupted;

/* ---- arguments --------------------------------------------------------------- */
bool arg_flag(args *a, const char *name);
/* arg_value consumes "--name VALUE" or "--name=VALUE"; returns false if absent.
 * A missing value is a usage error reported through cli_usage. */
bool arg_value(cli *c, args *a, const char *name, const char **out);
/* arg_values collects every occurrence (up to cap). */
size_t arg_values(cli *c, args *a, const char *name, const char **out, size_t cap);
/* arg_positional returns the next unconsumed non-option argument, or NULL. */
const char *arg_positional(args *a);
/* arg_done: a usage error (returns false) if anything is left. */
bool arg_done(cli *c, args *a);
bool parse_size(const char *s, uint64_t *out); /* 123, 4K, 256M, 1G (binary units) */

/* ---- results and errors -------------------------------------------------------- */
/* A result: in JSON mode one object on stdout; in human mode "key: value"
 * lines (nested objects indented). */
typedef struct out out_t;
out_t *out_begin(cli *c);
void out_str(out_t *o, const char *key, const char *val);
void out_int(out_t *o, const char *key, int64_t val);
void out_u64(out_t *o, const char *key, uint64_t val);
void out_bool(out_t *o, const char *key, bool val);
void out_double(out_t *o, const char *key, double val);
void out_raw(out_t *o, const char *key, const char *json); /* JSON mode only */
void out_obj(out_t *o, const char *key);   /* key NULL inside an array */
void out_arr(out_t *o, const char *key);
void out_close(out_t *o);                  /* closes the innermost object/array */
void out_end(out_t *o);                    /* prints and frees */
void json_escape(FILE *f, const char *s);

/* cli_fail reports a library failure |st| while doing |what|: a message on
 * stderr (and, with --json, an error object on stdout). Returns the exit
 * code for |st|. */
int cli_fail(cli *c, vmenc_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* cli_fail_stderr: the message on stderr only (a result object was printed already). */
int cli_fail_stderr(cli *c, vmenc_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cli_usage(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int exit_code_for(vmenc_status st);
/* cli_confirm asks before a destructive change (docs/cli.md "Confirmation").
 * |what| says what will happen. With --yes it goes on at once. On a
 * terminal (stdin and stderr) it prints |what| and asks for "YES"; anything
 * else declines (exit 1, nothing changed). Never asks on a pipe: without
 * --yes it refuses there (exit 2) and says to pass --yes. Returns EXIT_OK to
 * go on, else the exit code (reported). */
int cli_confirm(cli *c, const char *what);
void cli_info(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3))); /* stderr unless --quiet */

/* ---- workspace --------------------------------------------------------------------- */
/* cli_passphrase reads the workspace passphrase (--passphrase-file,
 * VMENC_PASSPHRASE, or a prompt on the terminal) into |buf|. */
/* cli_secret reads a password that is not the workspace passphrase: from
 * |file| (one line) or a prompt on the terminal (twice when |confirm|);
 * never from the command line or the environment. */
bool cli_secret(cli *c, const char *what, const char *opt, const char *file, bool confirm, char *buf, size_t cap,
                size_t *out_len);
bool cli_passphrase(cli *c, const char *prompt, const char *file, const char *env, bool confirm, char *buf,
                    size_t cap, size_t *out_len);
/* cli_open_options checks --workspace, reads the passphrase into |pass| and
 * fills |oo| from the global options (the caller wipes |pass|). */
int cli_open_options(cli *c, char *pass, size_t pass_cap, vmenc_workspace_open_options *oo);
/* cli_workspace_fail reports a failed open (or re-seal) of the workspace:
 * the file, line and reason in |err|, prefixed with |what|. */
int cli_workspace_fail(cli *c, vmenc_status st, const char *what, const vmenc_workspace_error *err);
/* path_problem: a sentence when |path| is a directory, a symbolic link (or
 * a loop of them) or not a regular file where a file should be; else NULL. */
const char *path_problem(const char *path, char *buf, size_t cap);
/* cli_open opens the workspace (once); on failure reports it and returns the exit code. */
int cli_open(cli *c);

/* ---- progress ----------------------------------------------------------------------- */
typedef struct progress progress;
progress *progress_start(cli *c, const char *label, uint64_t total);
void progress_update(progress *p, uint64_t done);
/* progress_set_base: |done| bytes were done before this run (rate and ETA count from there). */
void progress_set_base(progress *p, uint64_t done);
/* progress_set_rate: use the rate the library measured (bytes per second). */
void progress_set_rate(progress *p, double bytes_per_second);
void progress_end(progress *p);

/* ---- commands ---------------------------------------------------------------------- */
typedef int (*cmd_fn)(cli *c, args *a);
typedef struct verb_def {
    const char *name;
    cmd_fn fn;
    const char *usage;   /* after "vmenc NOUN VERB" */
    const char *summary;
    const char *help;    /* options, one per line */
} verb_def;
typedef struct noun_def {
    const char *name;
    const verb_def *verbs; /* NULL-name terminated; NULL for a verb-less noun */
    cmd_fn fn;             /* verb-less noun (init, bench, demo) */
    const char *usage;
    const char *summary;
    const char *help;
} noun_def;

extern const verb_def kms_verbs[], vm_verbs[], disk_verbs[], file_verbs[], policy_verbs[], audit_verbs[],
    coredump_verbs[], migrate_verbs[];
extern const verb_def cluster_verbs[]; /* cmd_cluster.c */
extern const verb_def broker_verbs[]; /* cmd_broker.c */
/* `vmenc cluster host ...` and `vmenc cluster measurements ...` (cmd_broker.c). */
int cluster_host_cmd(cli *c, args *a);
int cluster_measurements_cmd(cli *c, args *a);
/* cluster_take_over: `vm register NAME --take-over` = `cluster take-over NAME`. */
int cluster_take_over(cli *c, const char *name);
/* cluster_demo: `vmenc demo --cluster [--keep DIR]` (cmd_cluster.c). */
int cluster_demo(cli *c, const char *keep);
/* `vmenc policy reseal` (cmd_reseal.c): re-seal a vouched policy document. */
int policy_reseal(cli *c, args *a);
/* `vmenc policy roles` (cmd_roles.c): the predefined and custom roles. */
int policy_roles(cli *c, args *a);
int cmd_init(cli *c, args *a);
int cmd_bench(cli *c, args *a);
int cmd_demo(cli *c, args *a);
extern const char *const cmd_init_help, *const cmd_bench_help, *const cmd_demo_help;
/* The command table (main.c) and the global options' help: the one source
 * of --help, the man pages and the bash completion (gen.c). */
extern const noun_def cli_nouns[];
extern const char cli_global_help[];
const char *cli_noun_help(const noun_def *n);
/* cli_generate writes generated documentation to stdout: |what| "man" (the
 * page of |arg|: "vmenc" or "vmenc-NOUN") or "bash-completion". */
int cli_generate(cli *c, const char *what, const char *arg);

/* helpers shared by commands */
/* cli_interrupted_fail reports a conversion stopped by Ctrl-C (exit 130). */
int cli_interrupted(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cli_principal(cli *c);
int open_vm(cli *c, const char *name, vmenc_vm **out, bool allow_locked);
void out_vm_status(out_t *o, vmenc_vm *vm);
const char *disk_state_name(vmenc_disk_state s);

/* In-place conversions (cmd_vm.c): the library's progress callback draws one
 * bar per disk and returns nonzero after Ctrl-C, which stops the conversion
 * between steps (VMENC_E_INTERRUPTED; resumable). */
typedef struct conv_disk {
    char id[VMENC_DISK_ID_MAX + 1];
    char kind[16];
    uint64_t bytes_done, bytes_total;
    bool done;
    double t0, seconds;
} conv_disk;
typedef struct conv_ctx {
    cli *c;
    const char *what;
    progress *p;
    size_t n;
    conv_disk d[VMENC_VM_MAX_DISKS];
    unsigned delay_ms;
    double t_last;
} conv_ctx;
void conv_init(conv_ctx *x, cli *c, const char *what);
int conv_progress(void *ctx, const char *disk_id, const vmenc_convert_progress *pr);
void conv_end(conv_ctx *x);
void conv_out(out_t *o, const conv_ctx *x);

/* Migration streams (cmd_migrate.c): the VM home's files through a sender
 * (manifest, headers, contents; then the end of stream). The receiving side
 * is vmenc_workspace_migrate_receive. */
vmenc_status mig_send_home(cli *c, vmenc_migration_sender *s, vmenc_vm *vm, uint64_t *out_files);

#endif
