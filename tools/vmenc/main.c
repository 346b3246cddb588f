/*
 * tools/vmenc/main.c - `vmenc [global options] <noun> <verb> [args]`: global
 * options, help at every level, dispatch, Ctrl-C. The command reference
 * is docs/cli.md.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const noun_def cli_nouns[] = {
    {"init", NULL, cmd_init, "init [DIR] --admin NAME [options]", "create a workspace", NULL},
    {"kms", kms_verbs, NULL, "kms <verb>", "key providers: list, add, remove, create-key, health, backup, restore", NULL},
    {"vm", vm_verbs, NULL, "vm <verb>", "VMs: create, list, status, info, encrypt, decrypt, rekey, resume, clone, disks, register, unlock", NULL},
    {"disk", disk_verbs, NULL, "disk <verb>", "raw decrypted disk access (read, write) and conversion state", NULL},
    {"file", file_verbs, NULL, "file <verb>", "VM state files (NVRAM, suspend, snapshot, swap): read, write", NULL},
    {"policy", policy_verbs, NULL, "policy <verb>", "who may do what: show, check, roles, user, group, role, grant, revoke, host-mode, storage-policy", NULL},
    {"coredump", coredump_verbs, NULL, "coredump <verb>", "encrypted host core dumps: host key, write, list, read, export, open", NULL},
    {"migrate", migrate_verbs, NULL, "migrate <verb>", "encrypted migration of a VM to another host: send, receive", NULL},
    {"cluster", cluster_verbs, NULL, "cluster <verb>", "cluster mode on etcd: init, join, leave, status, hosts, owner, take-over, power-on", NULL},
    {"broker", broker_verbs, NULL, "broker <verb>", "the key broker: serve hosts their KEKs over KMIP, status", NULL},
    {"audit", audit_verbs, NULL, "audit <verb>", "the hash-chained audit log: show, verify, tail", NULL},
    {"bench", NULL, cmd_bench, "bench [--size MiB] [--sector N]", "XTS backends against OpenSSL, one table", NULL},
    {"demo", NULL, cmd_demo, "demo [--disk-mib N] [--keep DIR] [--cluster]", "the whole story in a temporary workspace, checked", NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

const char cli_global_help[] =
    "Global options (before or after the command):\n"
    "  --workspace DIR        the workspace (default: $VMENC_WORKSPACE)\n"
    "  --user NAME            the acting principal (default: $VMENC_USER, then $USER)\n"
    "  --passphrase-file FILE the workspace passphrase (else $VMENC_PASSPHRASE, else a prompt)\n"
    "  --json                 one JSON object per result on stdout\n"
    "  --quiet                no informational messages\n"
    "  --yes, -y              do a destructive change without asking (scripts; see --dry-run)\n"
    "  -q, --batch-mode       --quiet and --yes together (as cryptsetup's -q)\n"
    "  --progress=auto|always|never  progress bars on stderr (auto: on a terminal)\n"
    "  --wait SECONDS         how long a change waits for another process's lock (default 10)\n"
    "  --help, -h             help for the command;  --version  the version\n";

static void print_top_help(FILE *f) {
    fprintf(f, "usage: vmenc [global options] <command> [<verb>] [args]\n\nCommands:\n");
    for (const noun_def *n = cli_nouns; n->name; n++)
        fprintf(f, "  %-9s %s\n", n->name, n->summary);
    fprintf(f, "\n%s\nExit codes: 0 ok, 1 a check failed, 2 usage, 3 denied by policy, 4 authentication/crypto,\n"
           "5 key provider unavailable or VM locked, 6 not found, 7 I/O, 8 bad configuration,\n"
           "10 internal, 130 interrupted. Reference: docs/cli.md\n",
           cli_global_help);
}

static void print_noun_help(FILE *f, const noun_def *n) {
    if (n->verbs == NULL) {
        fprintf(f, "usage: vmenc %s\n\n%s.\n\n%s\n%s", n->usage, n->summary, cli_noun_help(n), cli_global_help);
        return;
    }
    fprintf(f, "usage: vmenc %s <verb> [args]\n\n%s.\n\nVerbs:\n", n->name, n->summary);
    for (const verb_def *v = n->verbs; v->name; v++)
        fprintf(f, "  %-14s %s\n", v->name, v->summary);
    fprintf(f, "\n'vmenc %s <verb> --help' for a verb's options.\n", n->name);
}

const char *cli_noun_help(const noun_def *n) {
    return n->fn == cmd_init ? cmd_init_help : n->fn == cmd_bench ? cmd_bench_help : n->fn == cmd_demo ? cmd_demo_help : "";
}

static void print_verb_help(const noun_def *n, const verb_def *v) {
    printf("usage: vmenc %s %s %s\n\n%s.\n", n->name, v->name, v->usage, v->summary);
    if (v->help && v->help[0])
        printf("\n%s", v->help);
    printf("\n%s", cli_global_help);
}

static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) /* a second Ctrl-C: leave now */
        _exit(EXIT_INTERRUPTED);
    g_interrupted = 1;
}

int main(int argc, char **argv) {
    cli c = {.progress = PROGRESS_AUTO, .wait_ms = CLI_DEFAULT_WAIT_S * 1000u};
    args a = {.argc = argc - 1, .argv = argv + 1};
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (arg_flag(&a, "--version")) {
        printf("vmenc %s (library %s)\n", VMENC_VERSION_STRING, vmenc_version_string());
        return EXIT_OK;
    }
    bool help = arg_flag(&a, "--help") | arg_flag(&a, "-h");
    c.json = arg_flag(&a, "--json");
    bool batch = arg_flag(&a, "-q") | arg_flag(&a, "--batch-mode");
    c.quiet = arg_flag(&a, "--quiet") | batch;
    c.yes = arg_flag(&a, "--yes") | arg_flag(&a, "-y") | batch;
    /* generated documentation (man pages, bash completion): one source with --help */
    const char *gen = NULL;
    if (arg_value(&c, &a, "--generate", &gen))
        return cli_generate(&c, gen, arg_positional(&a));
    const char *prog = NULL;
    if (arg_value(&c, &a, "--progress", &prog)) {
        if (strcmp(prog, "auto") == 0)
            c.progress = PROGRESS_AUTO;
        else if (strcmp(prog, "always") == 0)
            c.progress = PROGRESS_ALWAYS;
        else if (strcmp(prog, "never") == 0)
            c.progress = PROGRESS_NEVER;
        else
            return cli_usage(&c, "--progress takes auto, always or never");
    }
    const char *wait = NULL;
    if (arg_value(&c, &a, "--wait", &wait)) {
        char *end = NULL;
        unsigned long secs = wait[0] >= '0' && wait[0] <= '9' ? strtoul(wait, &end, 10) : 0;
        if (end == NULL || *end != '\0' || secs > 86400)
            return cli_usage(&c, "--wait takes a number of seconds (0 to 86400)");
        c.wait_ms = (uint32_t)secs * 1000u;
    }
    if (!arg_value(&c, &a, "--workspace", &c.workspace))
        c.workspace = getenv("VMENC_WORKSPACE");
    c.user_from = "--user";
    if (!arg_value(&c, &a, "--user", &c.user)) {
        c.user = getenv("VMENC_USER");
        c.user_from = "$VMENC_USER";
        if (c.user == NULL || c.user[0] == '\0') {
            c.user = getenv("USER");
            c.user_from = "$USER";
        }
        if (c.user == NULL || c.user[0] == '\0') {
            c.user = "root";
            c.user_from = "default";
        }
    }
    (void)arg_value(&c, &a, "--passphrase-file", &c.passphrase_file);

    const char *noun = arg_positional(&a);
    if (noun == NULL || strcmp(noun, "help") == 0) {
        const char *what = noun ? arg_positional(&a) : NULL;
        if (what == NULL) {
            if (noun == NULL && !help) {
                if (!c.json)
                    print_top_help(stderr); /* with an error: stdout stays clean */
                for (int i = 0; i < a.argc; i++)
                    if (a.argv[i] != NULL)
                        return cli_usage(&c, "unknown option '%s'", a.argv[i]);
                return cli_usage(&c, "no command given");
            }
            print_top_help(stdout);
            return EXIT_OK;
        }
        noun = what;
        help = true;
    }
    const noun_def *n = cli_nouns;
    while (n->name && strcmp(n->name, noun) != 0)
        n++;
    if (n->name == NULL) {
        c.noun = NULL;
        return cli_usage(&c, "unknown command '%s'", noun);
    }
    c.noun = n->name;
    int rc;
    if (n->verbs == NULL) {
        if (help) {
            print_noun_help(stdout, n);
            return EXIT_OK;
        }
        rc = n->fn(&c, &a);
    } else {
        const char *verb = arg_positional(&a);
        if (verb == NULL) {
            if (help) {
                print_noun_help(stdout, n);
                return EXIT_OK;
            }
            if (!c.json)
                print_noun_help(stderr, n);
            return cli_usage(&c, "'%s' needs a verb", n->name);
        }
        const verb_def *v = n->verbs;
        while (v->name && strcmp(v->name, verb) != 0)
            v++;
        if (v->name == NULL) {
            if (!c.json)
                print_noun_help(stderr, n);
            return cli_usage(&c, "unknown verb '%s %s'", n->name, verb);
        }
        c.verb = v->name;
        if (help) {
            print_verb_help(n, v);
            return EXIT_OK;
        }
        rc = v->fn(&c, &a);
    }
    vmenc_workspace_free(c.ws);
    if (g_interrupted && rc == EXIT_OK)
        rc = EXIT_INTERRUPTED;
    return rc;
}
