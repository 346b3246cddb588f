/*
 * tools/vmenc/util.c - arguments, output, exit codes, passphrases,
 * progress and the workspace handle of the vmenc tool.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "plan.h"

volatile sig_atomic_t g_interrupted;

/* ---- arguments ------------------------------------------------------------------ */

bool arg_flag(args *a, const char *name) {
    for (int i = 0; i < a->argc; i++) {
        if (a->argv[i] != NULL && strcmp(a->argv[i], name) == 0) {
            a->argv[i] = NULL;
            return true;
        }
        if (a->argv[i] != NULL && strcmp(a->argv[i], "--") == 0)
            break;
    }
    return false;
}

static int find_value(cli *c, args *a, const char *name, int from, const char **out, bool *bad) {
    size_t n = strlen(name);
    for (int i = from; i < a->argc; i++) {
        char *s = a->argv[i];
        if (s == NULL)
            continue;
        if (strcmp(s, "--") == 0)
            break;
        if (strncmp(s, name, n) == 0 && s[n] == '=') {
            *out = s + n + 1;
            a->argv[i] = NULL;
            return i;
        }
        if (strcmp(s, name) == 0) {
            a->argv[i] = NULL;
            if (i + 1 >= a->argc || a->argv[i + 1] == NULL) {
                *bad = true;
                cli_usage(c, "option %s needs a value", name);
                return -1;
            }
            *out = a->argv[i + 1];
            a->argv[i + 1] = NULL;
            return i + 1;
        }
    }
    return -1;
}

bool arg_value(cli *c, args *a, const char *name, const char **out) {
    bool bad = false;
    return find_value(c, a, name, 0, out, &bad) >= 0;
}

size_t arg_values(cli *c, args *a, const char *name, const char **out, size_t cap) {
    size_t n = 0;
    bool bad = false;
    int i = 0;
    const char *v;
    while (n < cap && (i = find_value(c, a, name, i, &v, &bad)) >= 0)
        out[n++] = v;
    return n;
}

const char *arg_positional(args *a) {
    for (int i = 0; i < a->argc; i++) {
        char *s = a->argv[i];
        if (s == NULL)
            continue;
        if (strcmp(s, "--") == 0) {
            a->argv[i] = NULL;
            continue;
        }
        if (s[0] == '-' && s[1] != '\0')
            return NULL; /* an unknown option: arg_done reports it */
        a->argv[i] = NULL;
        return s;
    }
    return NULL;
}

bool arg_done(cli *c, args *a) {
    for (int i = 0; i < a->argc; i++) {
        if (a->argv[i] != NULL) {
            cli_usage(c, a->argv[i][0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a->argv[i]);
            return false;
        }
    }
    return true;
}

bool parse_size(const char *s, uint64_t *out) {
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: return false;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'B' || *end == 'b') && shift)
        end++;
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* ---- output ------------------------------------------------------------------------ */

#define OUT_DEPTH 16
struct out {
    cli *c;
    char *buf;
    size_t len;
    FILE *mem;
    int depth;
    bool first[OUT_DEPTH];
    bool is_arr[OUT_DEPTH];
    int arr_index[OUT_DEPTH];
};

void json_escape(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

out_t *out_begin(cli *c) {
    out_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->c = c;
    o->mem = open_memstream(&o->buf, &o->len);
    o->first[0] = true;
    if (c->json) {
        fputs("{", o->mem);
        const char *cmd[2] = {c->noun, c->verb};
        fputs("\"command\":", o->mem);
        char name[128];
        snprintf(name, sizeof(name), "%s%s%s", cmd[0] ? cmd[0] : "", cmd[1] ? " " : "", cmd[1] ? cmd[1] : "");
        json_escape(o->mem, name);
        o->first[0] = false;
    }
    return o;
}

static void key(out_t *o, const char *k) {
    if (o->c->json) {
        if (!o->first[o->depth])
            fputc(',', o->mem);
        o->first[o->depth] = false;
        if (k != NULL && !o->is_arr[o->depth]) {
            json_escape(o->mem, k);
            fputc(':', o->mem);
        }
    } else {
        for (int i = 0; i < o->depth; i++)
            fputs("  ", o->mem);
        if (o->is_arr[o->depth])
            fputs("- ", o->mem);
        else if (k != NULL)
            fprintf(o->mem, "%s: ", k);
    }
}

void out_str(out_t *o, const char *k, const char *v) {
    if (o == NULL)
        return;
    key(o, k);
    if (o->c->json)
        json_escape(o->mem, v ? v : "");
    else
        fprintf(o->mem, "%s\n", v ? v : "");
}
void out_int(out_t *o, const char *k, int64_t v) {
    if (o == NULL)
        return;
    key(o, k);
    fprintf(o->mem, o->c->json ? "%lld" : "%lld\n", (long long)v);
}
void out_u64(out_t *o, const char *k, uint64_t v) {
    if (o == NULL)
        return;
    key(o, k);
    fprintf(o->mem, o->c->json ? "%llu" : "%llu\n", (unsigned long long)v);
}
void out_bool(out_t *o, const char *k, bool v) {
    if (o == NULL)
        return;
    key(o, k);
    fprintf(o->mem, o->c->json ? "%s" : "%s\n", v ? (o->c->json ? "true" : "yes") : (o->c->json ? "false" : "no"));
}
void out_double(out_t *o, const char *k, double v) {
    if (o == NULL)
        return;
    key(o, k);
    fprintf(o->mem, o->c->json ? "%.3f" : "%.3f\n", v);
}
void out_raw(out_t *o, const char *k, const char *json) {
    if (o == NULL)
        return;
    key(o, k);
    /* One result per line: JSON whitespace outside strings can go, and a
     * newline inside a string is always escaped. */
    for (const char *p = json; *p; p++)
        if (*p != '\n' || !o->c->json)
            fputc(*p, o->mem);
    if (!o->c->json)
        fputc('\n', o->mem);
}
static void open_nested(out_t *o, const char *k, bool arr) {
    if (o == NULL || o->depth + 1 >= OUT_DEPTH)
        return;
    key(o, k);
    if (o->c->json)
        fputc(arr ? '[' : '{', o->mem);
    else if (k != NULL || o->is_arr[o->depth])
        fputc('\n', o->mem);
    o->depth++;
    o->first[o->depth] = true;
    o->is_arr[o->depth] = arr;
}
void out_obj(out_t *o, const char *k) { open_nested(o, k, false); }
void out_arr(out_t *o, const char *k) { open_nested(o, k, true); }
void out_close(out_t *o) {
    if (o == NULL || o->depth == 0)
        return;
    if (o->c->json)
        fputc(o->is_arr[o->depth] ? ']' : '}', o->mem);
    o->depth--;
}
void out_end(out_t *o) {
    if (o == NULL)
        return;
    while (o->depth > 0)
        out_close(o);
    if (o->c->json)
        fputs("}\n", o->mem);
    fclose(o->mem);
    if (o->c->json || !o->c->quiet)
        fwrite(o->buf, 1, o->len, stdout);
    fflush(stdout);
    free(o->buf);
    free(o);
}

/* ---- errors ---------------------------------------------------------------------- */

int exit_code_for(vmenc_status st) {
    switch (st) {
    case VMENC_OK: return EXIT_OK;
    case VMENC_E_DENIED: case VMENC_E_HOST_MODE: return EXIT_DENIED;
    case VMENC_E_NOT_FOUND: case VMENC_E_KEY_NOT_FOUND: case VMENC_E_NO_SUCH_PROVIDER:
    case VMENC_E_TOKEN_NOT_FOUND: return EXIT_NOT_FOUND;
    case VMENC_E_VM_LOCKED: return EXIT_UNAVAILABLE;
    case VMENC_E_POLICY_INVALID: return EXIT_CONFIG;
    case VMENC_E_AUDIT_TAMPERED: case VMENC_E_AUDIT_TRUNCATED: return EXIT_AUTH;
    case VMENC_E_AUDIT_SINK: return EXIT_IO;
    case VMENC_E_KMS_AUTH: case VMENC_E_PIN_LOCKED: case VMENC_E_KMS_CERT_VERIFY:
    case VMENC_E_KMS_NAME_MISMATCH: case VMENC_E_KMS_WRONG_KEY: return EXIT_AUTH;
    case VMENC_E_BAD_PATH: case VMENC_E_EXISTS: case VMENC_E_PROVIDER_EXISTS: case VMENC_E_CYCLE:
    case VMENC_E_ILLEGAL_TRANSITION: return EXIT_USAGE;
    default: break;
    }
    switch (vmenc_status_category_of(st)) {
    case VMENC_CAT_USAGE: return EXIT_USAGE;
    case VMENC_CAT_PARSE: return EXIT_CONFIG;
    case VMENC_CAT_CRYPTO: return EXIT_AUTH;
    case VMENC_CAT_PROVIDER: return EXIT_UNAVAILABLE;
    case VMENC_CAT_POLICY: return EXIT_DENIED;
    case VMENC_CAT_AUDIT: return EXIT_AUTH;
    case VMENC_CAT_RESOURCE: return EXIT_IO;
    default: return EXIT_INTERNAL;
    }
}

static void json_error(cli *c, const char *status_name, int code, int exit_code, const char *msg) {
    if (!c->json)
        return;
    out_t *o = out_begin(c);
    out_bool(o, "ok", false);
    out_obj(o, "error");
    out_str(o, "status", status_name);
    out_int(o, "code", code);
    out_int(o, "exit", exit_code);
    out_str(o, "message", msg);
    out_end(o);
}

/* cli_full_message: "<msg>: <what the status means> (<STATUS>)", without
 * saying the same thing twice (a message that already ends with the
 * status's text keeps only the name), and for a denial of a principal that
 * came from $USER or the default, how to name the right one. */
static void cli_full_message(cli *c, vmenc_status st, const char *msg, char *full, size_t cap) {
    const char *what = vmenc_strerror(st);
    size_t ml = strlen(msg), wl = strlen(what);
    if (ml >= wl && strcmp(msg + ml - wl, what) == 0)
        snprintf(full, cap, "%s (%s)", msg, vmenc_status_name(st));
    else
        snprintf(full, cap, "%s: %s (%s)", msg, what, vmenc_status_name(st));
    /* A full file system hides behind "I/O error" or "audit sink failed":
     * say so when the workspace's file system has (almost) no room left. */
    struct statvfs fs;
    if ((st == VMENC_E_IO || st == VMENC_E_NO_SPACE || st == VMENC_E_AUDIT_SINK) && c->workspace != NULL &&
        statvfs(c->workspace, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < (1u << 20)) {
        size_t l = strlen(full);
        snprintf(full + l, cap - l, "; the file system of %s is full (%llu bytes free): free some space and retry",
                 c->workspace, (unsigned long long)fs.f_bavail * fs.f_frsize);
    }
    if (st == VMENC_E_DENIED && c->ws != NULL && c->user != NULL && !policy_has_name(c, "users", c->user)) {
        size_t l = strlen(full);
        snprintf(full + l, cap - l, "; there is no user '%s' in the policy ('vmenc policy user %s' adds one)", c->user,
                 c->user);
    }
    if ((st == VMENC_E_DENIED || st == VMENC_E_NOT_FOUND) && c->user_from != NULL &&
        (strcmp(c->user_from, "$USER") == 0 || strcmp(c->user_from, "default") == 0)) {
        size_t l = strlen(full);
        snprintf(full + l, cap - l, "; acting as '%s' (from %s, as no --user or $VMENC_USER was given): "
                                    "pass --user NAME", c->user, c->user_from);
    }
}

int cli_fail(cli *c, vmenc_status st, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char full[2048];
    cli_full_message(c, st, msg, full, sizeof(full));
    /* A lock we waited for in vain: say who holds it and what to do. */
    char holder[VMENC_WORKSPACE_MESSAGE_MAX];
    if (st == VMENC_E_LOCKED && c->ws != NULL && vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) == VMENC_OK) {
        size_t l = strlen(full);
        snprintf(full + l, sizeof(full) - l, "; held by %s; retry, or wait longer with --wait SECONDS", holder);
    }
    fprintf(stderr, "vmenc: %s\n", full);
    int code = exit_code_for(st);
    json_error(c, vmenc_status_name(st), st, code, full);
    return code;
}

int cli_fail_stderr(cli *c, vmenc_status st, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char full[2048];
    cli_full_message(c, st, msg, full, sizeof(full));
    fprintf(stderr, "vmenc: %s\n", full);
    return exit_code_for(st);
}

int cli_usage(cli *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "vmenc: %s (see 'vmenc %s%s%s%s--help')\n", msg, c->noun ? c->noun : "", c->noun ? " " : "",
            c->verb ? c->verb : "", c->verb ? " " : "");
    json_error(c, "usage", 0, EXIT_USAGE, msg);
    return EXIT_USAGE;
}

int cli_confirm(cli *c, const char *what) {
    if (c->yes)
        return EXIT_OK;
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
        /* Never a question on a pipe, and never a destructive change a
         * script did not ask for in so many words. */
        char msg[1200];
        snprintf(msg, sizeof(msg), "%s; this asks for confirmation, and stdin is not a terminal: nothing was "
                                   "asked and nothing changed; pass --yes (or -q) to do it from a script, or "
                                   "--dry-run to see the plan", what);
        return cli_usage(c, "%s", msg);
    }
    fprintf(stderr, "WARNING!\n========\n%s.\n\nAre you sure? (Type 'YES' in capital letters): ",
            what);
    fflush(stderr);
    char answer[64];
    size_t n = 0;
    while (n + 1 < sizeof(answer)) {
        ssize_t r = read(STDIN_FILENO, answer + n, 1);
        if (r < 0 && errno == EINTR && !g_interrupted)
            continue;
        if (r <= 0 || answer[n] == '\n')
            break;
        n++;
    }
    answer[n] = '\0';
    if (strcmp(answer, "YES") == 0)
        return EXIT_OK;
    fprintf(stderr, "vmenc: not confirmed (the answer was not YES): nothing changed\n");
    if (c->json) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", false);
        out_bool(o, "declined", true);
        out_obj(o, "error");
        out_str(o, "status", "declined");
        out_int(o, "code", 0);
        out_int(o, "exit", EXIT_FAILED);
        out_str(o, "message", "not confirmed: nothing changed");
        out_end(o);
    }
    return EXIT_FAILED;
}

void cli_info(cli *c, const char *fmt, ...) {
    if (c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- passphrase and workspace ------------------------------------------------------------ */

/* read_stdin_line reads one line from stdin byte by byte, so whatever
 * follows it (the data of `disk write`, a second secret) stays there. */
static ssize_t read_stdin_line(char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(STDIN_FILENO, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (buf[n] == '\n')
            break;
        n++;
    }
    return (ssize_t)n;
}

/* read_file_line: the secret in |path|'s first line; "-" is stdin. */
static bool read_file_line(const char *path, char *buf, size_t cap, size_t *out_len) {
    ssize_t n;
    if (strcmp(path, "-") == 0) {
        n = read_stdin_line(buf, cap);
    } else {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return false;
        n = read(fd, buf, cap - 1);
        close(fd);
        /* one line: a second line is not part of the secret */
        char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
        if (nl != NULL)
            n = nl - buf;
    }
    if (n <= 0)
        return false;
    size_t len = (size_t)n;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    *out_len = len;
    return len > 0;
}

static bool prompt_tty(const char *prompt, char *buf, size_t cap, size_t *out_len) {
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct termios old, quiet;
    bool ok = tcgetattr(fd, &old) == 0;
    if (ok) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        ok = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    ssize_t n = -1;
    if (ok) {
        if (write(fd, prompt, strlen(prompt)) < 0)
            ok = false;
        n = read(fd, buf, cap - 1);
        (void)tcsetattr(fd, TCSAFLUSH, &old);
        if (write(fd, "\n", 1) < 0)
            ok = false;
    }
    close(fd);
    if (!ok || n <= 0)
        return false;
    size_t len = (size_t)n;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    *out_len = len;
    return len > 0;
}

bool cli_passphrase(cli *c, const char *prompt, const char *file, const char *env, bool confirm, char *buf,
                    size_t cap, size_t *out_len) {
    if (file != NULL) {
        if (!read_file_line(file, buf, cap, out_len)) {
            char why[1200];
            if (strcmp(file, "-") != 0 && path_problem(file, why, sizeof(why)) != NULL)
                cli_usage(c, "cannot read a passphrase: %s", why);
            else
                cli_usage(c, "cannot read a passphrase from '%s'%s", strcmp(file, "-") == 0 ? "(stdin)" : file,
                          strcmp(file, "-") == 0 ? ": no line on stdin" : ": missing, unreadable or empty");
            return false;
        }
        return true;
    }
    const char *e = env ? getenv(env) : NULL;
    if (e != NULL && e[0] != '\0') {
        size_t n = strlen(e);
        if (n >= cap) {
            cli_usage(c, "%s is too long", env);
            return false;
        }
        memcpy(buf, e, n + 1);
        *out_len = n;
        return true;
    }
    if (!prompt_tty(prompt, buf, cap, out_len)) {
        cli_usage(c, "no passphrase: use %s FILE (or - for stdin)%s%s, or run on a terminal",
                  env && strcmp(env, "VMENC_BACKUP_PASSPHRASE") == 0 ? "--backup-passphrase-file" : "--passphrase-file",
                  env ? " or $" : "", env ? env : "");
        return false;
    }
    if (confirm) {
        char again[1024];
        size_t n2 = 0;
        bool same = prompt_tty("Repeat the passphrase: ", again, sizeof(again), &n2) && n2 == *out_len &&
                    memcmp(again, buf, n2) == 0;
        vmenc_memzero(again, sizeof(again));
        if (!same) {
            cli_usage(c, "the passphrases differ");
            return false;
        }
    }
    return true;
}

bool cli_secret(cli *c, const char *what, const char *opt, const char *file, bool confirm, char *buf, size_t cap,
                size_t *out_len) {
    if (file != NULL) {
        if (!read_file_line(file, buf, cap, out_len)) {
            cli_usage(c, "cannot read the %s from '%s'", what, strcmp(file, "-") == 0 ? "(stdin)" : file);
            return false;
        }
        return true;
    }
    char prompt[128];
    snprintf(prompt, sizeof(prompt), "%c%s: ", what[0] >= 'a' && what[0] <= 'z' ? what[0] - 32 : what[0], what + 1);
    if (!prompt_tty(prompt, buf, cap, out_len)) {
        cli_usage(c, "no %s: use %s FILE (or - for stdin) or run on a terminal", what, opt);
        return false;
    }
    if (confirm) {
        char again[1024];
        size_t n2 = 0;
        snprintf(prompt, sizeof(prompt), "Repeat the %s: ", what);
        bool same = prompt_tty(prompt, again, sizeof(again), &n2) && n2 == *out_len && memcmp(again, buf, n2) == 0;
        vmenc_memzero(again, sizeof(again));
        if (!same) {
            vmenc_memzero(buf, cap);
            cli_usage(c, "the %ss differ", what);
            return false;
        }
    }
    return true;
}

int cli_interrupted(cli *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "vmenc: %s\n", msg);
    if (c->json) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", false);
        out_bool(o, "interrupted", true);
        out_obj(o, "error");
        out_str(o, "status", vmenc_status_name(VMENC_E_INTERRUPTED));
        out_int(o, "code", VMENC_E_INTERRUPTED);
        out_int(o, "exit", EXIT_INTERRUPTED);
        out_str(o, "message", msg);
        out_end(o);
    }
    return EXIT_INTERRUPTED;
}

int cli_open_options(cli *c, char *pass, size_t pass_cap, vmenc_workspace_open_options *oo) {
    if (c->workspace == NULL)
        return cli_usage(c, "no workspace: use --workspace DIR or VMENC_WORKSPACE");
    size_t pass_len = 0;
    if (!cli_passphrase(c, "Workspace passphrase: ", c->passphrase_file, "VMENC_PASSPHRASE", false, pass, pass_cap,
                        &pass_len))
        return EXIT_USAGE;
    *oo = (vmenc_workspace_open_options){.struct_size = sizeof(*oo), .passphrase = (const uint8_t *)pass,
                                         .passphrase_len = pass_len, .lock_timeout_ms = c->wait_ms};
    if (getenv("VMENC_NO_SYNC") != NULL)
        oo->flags |= VMENC_WORKSPACE_OPEN_NO_SYNC;
    return EXIT_OK;
}

const char *path_problem(const char *path, char *buf, size_t cap) {
    struct stat sb;
    buf[0] = '\0';
    if (path == NULL || path[0] == '\0' || lstat(path, &sb) != 0)
        return NULL;
    if (S_ISDIR(sb.st_mode))
        snprintf(buf, cap, "'%s' is a directory where a file should be", path);
    else if (S_ISLNK(sb.st_mode)) {
        if (stat(path, &sb) != 0 && errno == ELOOP)
            snprintf(buf, cap, "'%s' is a symbolic link loop", path);
        else
            snprintf(buf, cap, "'%s' is a symbolic link, which vmenc does not follow in a workspace", path);
    } else if (!S_ISREG(sb.st_mode))
        snprintf(buf, cap, "'%s' is not a regular file", path);
    return buf[0] ? buf : NULL;
}

int cli_workspace_fail(cli *c, vmenc_status st, const char *what, const vmenc_workspace_error *err) {
    char why[PATH_MAX + 96];
    if (err->file[0] != '\0' && (st == VMENC_E_BAD_PATH || st == VMENC_E_IO || st == VMENC_E_NOT_FOUND)) {
        char path[PATH_MAX];
        if (err->file[0] == '/')
            snprintf(path, sizeof(path), "%s", err->file);
        else
            snprintf(path, sizeof(path), "%s/%s", c->workspace ? c->workspace : ".", err->file);
        if (path_problem(path, why, sizeof(why)) != NULL)
            return cli_fail(c, st, "%s %s", what, why);
    }
    if (err->line > 0)
        return cli_fail(c, st, "workspace %s:%u: %s", err->file, err->line, err->message);
    return cli_fail(c, st, "%s %s%s%s", what, err->file[0] ? err->file : c->workspace, err->message[0] ? ": " : "",
                    err->message);
}

int cli_open(cli *c) {
    if (c->ws != NULL)
        return EXIT_OK;
    char pass[1024];
    vmenc_workspace_open_options oo;
    int rc = cli_open_options(c, pass, sizeof(pass), &oo);
    if (rc != EXIT_OK)
        return rc;
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_open(c->workspace, &oo, &err, &c->ws);
    vmenc_memzero(pass, sizeof(pass));
    return st == VMENC_OK ? EXIT_OK : cli_workspace_fail(c, st, "workspace", &err);
}

const char *cli_principal(cli *c) { return c->user; }

/* ---- progress ------------------------------------------------------------------------------ */

struct progress {
    bool show, shown;
    char label[48];
    uint64_t total, base, done; /* base: bytes already done when this run began (a resumed conversion) */
    double t0, last;
    double rate;          /* > 0: the caller's measured rate, in bytes per second */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

progress *progress_start(cli *c, const char *label, uint64_t total) {
    progress *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->show = !c->quiet && (c->progress == PROGRESS_ALWAYS || (c->progress == PROGRESS_AUTO && isatty(2)));
    snprintf(p->label, sizeof(p->label), "%s", label);
    p->total = total;
    p->t0 = p->last = now_s();
    return p;
}

void progress_update(progress *p, uint64_t done) {
    if (p == NULL || !p->show)
        return;
    p->done = done;
    double t = now_s();
    if (p->shown && t - p->last < 0.1 && done < p->total)
        return;
    p->shown = true;
    p->last = t;
    uint64_t moved = done > p->base ? done - p->base : 0;
    double el = t - p->t0, rate = p->rate > 0 ? p->rate : el > 0 ? (double)moved / el : 0;
    double frac = p->total ? (double)done / (double)p->total : 1;
    int width = 30, fill = (int)(frac * width);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "\r  %-16s [%s] %3.0f%% %7.1f MiB/s ETA %3.0fs", p->label, bar, frac * 100, rate / 1048576.0, eta);
    fflush(stderr);
}

void progress_set_base(progress *p, uint64_t done) {
    if (p != NULL)
        p->base = done;
}

void progress_set_rate(progress *p, double bytes_per_second) {
    if (p != NULL)
        p->rate = bytes_per_second;
}

void progress_end(progress *p) {
    if (p == NULL)
        return;
    if (p->show) {
        p->shown = false; /* draw where it stopped: the total unless interrupted */
        progress_update(p, p->done);
        fputc('\n', stderr);
    }
    free(p);
}
