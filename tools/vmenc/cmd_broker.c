/*
 * tools/vmenc/cmd_broker.c - `vmenc broker serve|status`: the thin daemon
 * around the key broker (include/vmenc/broker.h, docs/broker.md). serve
 * runs the broker of the workspace given with --workspace (the broker's own
 * workspace: its key providers and audit log) until Ctrl-C / SIGTERM,
 * writing WORKSPACE/broker-status.json (pid, port, counters) every second;
 * status prints that file and whether its process is alive.
 *
 * Safety rule: this file decides nothing; every authorization is the
 * library's, and it uses public headers only.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "plan.h"
#include "vmenc/broker.h"

#define STATUS_FILE "broker-status.json"

typedef struct serve_arg {
    vmenc_broker *b;
    vmenc_status s;
} serve_arg;

static void *serve_thread(void *arg) {
    serve_arg *sa = arg;
    sa->s = vmenc_broker_serve(sa->b);
    return NULL;
}

static void write_status(const char *dir, const vmenc_broker_status *st) {
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/%s", dir, STATUS_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f,
            "{\"pid\":%ld,\"port\":%u,\"connections\":%llu,\"requests\":%llu,\"releases\":%llu,"
            "\"refusals\":%llu,\"errors\":%llu}\n",
            (long)getpid(), st->port, (unsigned long long)st->connections, (unsigned long long)st->requests,
            (unsigned long long)st->releases, (unsigned long long)st->refusals, (unsigned long long)st->errors);
    if (fclose(f) == 0)
        (void)rename(tmp, path);
}

static int parse_listen(cli *c, const char *s, char *host, size_t cap, uint16_t *port) {
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= cap)
        return cli_usage(c, "--listen takes HOST:PORT");
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end = NULL;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (end == NULL || *end != '\0' || p > 65535)
        return cli_usage(c, "--listen takes HOST:PORT (PORT 0: any free port)");
    *port = (uint16_t)p;
    return EXIT_OK;
}

/* provider_problem explains a broker that would not start because of its
 * key provider: none or several in the workspace and no --provider
 * (VMENC_E_INVALID_ARG), or a --provider the workspace lacks
 * (VMENC_E_NOT_FOUND). It opens the workspace to list them; EXIT_OK when
 * the failure was something else. */
static int provider_problem(cli *c, const vmenc_broker_config *cfg, vmenc_status s,
                            const vmenc_workspace_open_options *oo) {
    if (!(cfg->provider == NULL && s == VMENC_E_INVALID_ARG) && !(cfg->provider != NULL && s == VMENC_E_NOT_FOUND))
        return EXIT_OK;
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    if (c->ws == NULL && vmenc_workspace_open(c->workspace, oo, &err, &c->ws) != VMENC_OK)
        return EXIT_OK;
    char known[1024];
    bool found = kms_known(c, cfg->provider != NULL ? cfg->provider : "", known, sizeof(known));
    size_t num = vmenc_workspace_num_kms(c->ws);
    if (cfg->provider != NULL && !found)
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "the broker's workspace %s has no key provider '%s' (configured: %s)",
                        c->workspace, cfg->provider, known[0] ? known : "none");
    if (cfg->provider == NULL && num == 0)
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "the broker's workspace %s has no key provider: add the KMS with "
                        "'vmenc kms add' (docs/broker.md)", c->workspace);
    if (cfg->provider == NULL && num > 1)
        return cli_usage(c, "the broker's workspace %s has %zu key providers (%s): pick the one that serves the hosts "
                         "with --provider NAME (the alias the cluster document names)", c->workspace, num, known);
    return EXIT_OK;
}

static int br_serve(cli *c, args *a) {
    vmenc_broker_config cfg = {.struct_size = sizeof(cfg)};
    const char *listen = "127.0.0.1:5696", *idle = NULL;
    (void)arg_value(c, a, "--listen", &listen);
    (void)arg_value(c, a, "--tls-ca", &cfg.ca_file);
    (void)arg_value(c, a, "--tls-cert", &cfg.cert_file);
    (void)arg_value(c, a, "--tls-key", &cfg.key_file);
    (void)arg_value(c, a, "--provider", &cfg.provider);
    (void)arg_value(c, a, "--id", &cfg.broker_id);
    (void)arg_value(c, a, "--name", &cfg.cluster);
    (void)arg_value(c, a, "--endpoints", &cfg.etcd_endpoints);
    (void)arg_value(c, a, "--cacert", &cfg.etcd_ca_file);
    (void)arg_value(c, a, "--cert", &cfg.etcd_cert_file);
    (void)arg_value(c, a, "--key", &cfg.etcd_key_file);
    (void)arg_value(c, a, "--idle-timeout", &idle);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (c->workspace == NULL || cfg.ca_file == NULL || cfg.cert_file == NULL || cfg.key_file == NULL ||
        cfg.etcd_endpoints == NULL || cfg.etcd_ca_file == NULL || cfg.etcd_cert_file == NULL ||
        cfg.etcd_key_file == NULL)
        return cli_usage(c, "--workspace, --tls-ca/--tls-cert/--tls-key and --endpoints/--cacert/--cert/--key "
                            "are required");
    if (cfg.cluster == NULL)
        cfg.cluster = "vmenc";
    if (idle != NULL) {
        char *end = NULL;
        unsigned long v = strtoul(idle, &end, 10);
        if (end == NULL || *end != '\0' || v < 1 || v > 3600)
            return cli_usage(c, "--idle-timeout takes seconds, 1 to 3600");
        cfg.idle_timeout_ms = (uint32_t)v * 1000u;
    }
    char host[256];
    int rc = parse_listen(c, listen, host, sizeof(host), &cfg.listen_port);
    if (rc != EXIT_OK)
        return rc;
    cfg.listen_host = host;
    cfg.workspace_dir = c->workspace;
    char pass[1025];
    vmenc_workspace_open_options oo;
    rc = cli_open_options(c, pass, sizeof(pass), &oo);
    if (rc != EXIT_OK)
        return rc;
    cfg.open_options = &oo;
    vmenc_broker *b = NULL;
    vmenc_status s = vmenc_broker_open(&cfg, &b);
    if (s != VMENC_OK) {
        rc = provider_problem(c, &cfg, s, &oo);
        vmenc_memzero(pass, sizeof(pass));
        return rc != EXIT_OK ? rc : cli_fail(c, s, "cannot start the broker of workspace %s", c->workspace);
    }
    vmenc_memzero(pass, sizeof(pass));
    vmenc_broker_status st = {.struct_size = sizeof(st)};
    if (vmenc_broker_get_status(b, &st) == VMENC_OK) {
        fprintf(stdout, "{\"ok\":true,\"listening\":\"%s:%u\",\"pid\":%ld}\n", host, st.port, (long)getpid());
        fflush(stdout);
        write_status(c->workspace, &st);
    }
    serve_arg sa = {.b = b, .s = VMENC_OK};
    pthread_t th;
    if (pthread_create(&th, NULL, serve_thread, &sa) != 0) {
        vmenc_broker_close(b);
        return cli_fail(c, VMENC_E_NOMEM, "cannot start the broker thread");
    }
    while (!g_interrupted) {
        sleep(1);
        if (vmenc_broker_get_status(b, &st) == VMENC_OK)
            write_status(c->workspace, &st);
    }
    vmenc_broker_stop(b);
    pthread_join(th, NULL);
    vmenc_broker_close(b);
    return sa.s == VMENC_OK ? EXIT_OK : cli_fail(c, sa.s, "broker");
}

static int br_status(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (c->workspace == NULL)
        return cli_usage(c, "--workspace (the broker's) is required");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", c->workspace, STATUS_FILE);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cli_fail(c, VMENC_E_NOT_FOUND, "no broker has run in %s (%s)", c->workspace, path);
    long pid = 0;
    unsigned port = 0;
    unsigned long long conns = 0, reqs = 0, rel = 0, ref = 0, err = 0;
    int n = fscanf(f,
                   "{\"pid\":%ld,\"port\":%u,\"connections\":%llu,\"requests\":%llu,\"releases\":%llu,"
                   "\"refusals\":%llu,\"errors\":%llu}",
                   &pid, &port, &conns, &reqs, &rel, &ref, &err);
    fclose(f);
    if (n != 7)
        return cli_fail(c, VMENC_E_PARSE, "%s is not a broker status file", path);
    bool alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "running", alive);
    out_int(o, "pid", pid);
    out_u64(o, "port", port);
    out_u64(o, "connections", conns);
    out_u64(o, "requests", reqs);
    out_u64(o, "releases", rel);
    out_u64(o, "refusals", ref);
    out_u64(o, "errors", err);
    out_end(o);
    return EXIT_OK;
}


/* ---- vmenc cluster host enroll|approve|revoke, vmenc cluster measurements ... ----------------- */

static int admin_of(cli *c, args *a, vmenc_broker_admin *ad) {
    *ad = (vmenc_broker_admin){.struct_size = sizeof(*ad)};
    (void)arg_value(c, a, "--name", &ad->cluster);
    (void)arg_value(c, a, "--endpoints", &ad->etcd_endpoints);
    (void)arg_value(c, a, "--cacert", &ad->etcd_ca_file);
    (void)arg_value(c, a, "--cert", &ad->etcd_cert_file);
    (void)arg_value(c, a, "--key", &ad->etcd_key_file);
    if (ad->etcd_endpoints == NULL || ad->etcd_ca_file == NULL || ad->etcd_cert_file == NULL ||
        ad->etcd_key_file == NULL)
        return cli_usage(c, "--endpoints, --cacert, --cert and --key (the cluster's etcd) are required");
    /* The workspace's policy authorizes the call and its audit log records it (allowed, denied, failed). */
    if (c->workspace == NULL)
        return cli_usage(c, "--workspace (a host of the cluster: its policy authorizes you, its audit log records "
                            "the change) is required");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    ad->workspace = c->ws;
    ad->principal = cli_principal(c);
    return EXIT_OK;
}

static int host_enroll(cli *c, args *a) {
    vmenc_broker_enroll_spec es = {.struct_size = sizeof(es)};
    (void)arg_value(c, a, "--broker", &es.broker);
    (void)arg_value(c, a, "--tls-ca", &es.ca_file);
    (void)arg_value(c, a, "--tls-cert", &es.cert_file);
    (void)arg_value(c, a, "--tls-key", &es.key_file);
    (void)arg_value(c, a, "--tpm", &es.tpm_tcti);
    (void)arg_value(c, a, "--ak-blob", &es.ak_blob_path);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (es.broker == NULL || es.ca_file == NULL || es.cert_file == NULL || es.key_file == NULL ||
        es.tpm_tcti == NULL || es.ak_blob_path == NULL)
        return cli_usage(c, "--broker, --tls-ca, --tls-cert, --tls-key, --tpm and --ak-blob are required");
    vmenc_status s = vmenc_broker_host_enroll(&es);
    if (s != VMENC_OK)
        return cli_fail(c, s, "enrolment through broker %s", es.broker);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "status", "enrolled, awaiting approval");
    out_str(o, "ak_blob", es.ak_blob_path);
    out_end(o);
    return EXIT_OK;
}

static int host_admin(cli *c, args *a, bool approve) {
    const char *host = arg_positional(a);
    vmenc_broker_admin ad;
    int rc = admin_of(c, a, &ad);
    if (rc != EXIT_OK)
        return rc;
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (host == NULL)
        return cli_usage(c, "which host?");
    vmenc_status s = approve ? vmenc_broker_host_approve(&ad, host) : vmenc_broker_host_revoke(&ad, host);
    if (s != VMENC_OK)
        return cli_fail(c, s, "cannot %s host %s's TPM binding", approve ? "approve" : "revoke", host);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "host", host);
    out_str(o, "binding", approve ? "approved" : "revoked");
    out_end(o);
    return EXIT_OK;
}

int cluster_host_cmd(cli *c, args *a) {
    const char *sub = arg_positional(a);
    if (sub != NULL && strcmp(sub, "enroll") == 0)
        return host_enroll(c, a);
    if (sub != NULL && strcmp(sub, "approve") == 0)
        return host_admin(c, a, true);
    if (sub != NULL && strcmp(sub, "revoke") == 0)
        return host_admin(c, a, false);
    return cli_usage(c, "vmenc cluster host enroll|approve|revoke ...");
}

typedef struct list_ctx {
    out_t *o;
} list_ctx;

static int list_one(void *arg, const char *name, const char *json) {
    list_ctx *l = arg;
    out_obj(l->o, NULL);
    out_str(l->o, "name", name);
    out_raw(l->o, "measurement", json);
    out_close(l->o);
    return 0;
}

int cluster_measurements_cmd(cli *c, args *a) {
    const char *sub = arg_positional(a);
    const char *pcrs = NULL, *digest = NULL, *tpm = NULL, *mode = NULL, *ek_ca = NULL;
    if (sub == NULL)
        return cli_usage(c, "vmenc cluster measurements add|list|remove|mode ...");
    const char *name = strcmp(sub, "list") == 0 || strcmp(sub, "mode") == 0 ? NULL : arg_positional(a);
    (void)arg_value(c, a, "--pcrs", &pcrs);
    (void)arg_value(c, a, "--digest", &digest);
    (void)arg_value(c, a, "--from-tpm", &tpm);
    (void)arg_value(c, a, "--attestation", &mode);
    (void)arg_value(c, a, "--ek-ca", &ek_ca);
    vmenc_broker_admin ad;
    int rc = admin_of(c, a, &ad);
    if (rc != EXIT_OK)
        return rc;
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (pcrs == NULL)
        pcrs = "sha256:0,1,2,3,4,5,6,7";
    vmenc_status s;
    char hex[65];
    if (strcmp(sub, "add") == 0) {
        if (name == NULL || (digest == NULL) == (tpm == NULL))
            return cli_usage(c, "measurements add NAME (--digest HEX | --from-tpm TCTI) [--pcrs SEL]");
        if (tpm != NULL) {
            s = vmenc_broker_measurement_from_tpm(tpm, pcrs, hex);
            if (s != VMENC_OK)
                return cli_fail(c, s, "cannot read the PCRs of %s", tpm);
            digest = hex;
        }
        s = vmenc_broker_measurement_add(&ad, name, pcrs, digest, cli_principal(c));
    } else if (strcmp(sub, "remove") == 0) {
        if (name == NULL)
            return cli_usage(c, "measurements remove NAME");
        s = vmenc_broker_measurement_remove(&ad, name);
    } else if (strcmp(sub, "mode") == 0) {
        if (mode == NULL)
            return cli_usage(c, "measurements mode --attestation off|period=S|per-release [--pcrs SEL] [--ek-ca F]");
        s = vmenc_broker_set_attestation(&ad, mode, pcrs, ek_ca);
    } else if (strcmp(sub, "list") == 0) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", true);
        out_arr(o, "measurements");
        list_ctx l = {.o = o};
        s = vmenc_broker_measurement_list(&ad, list_one, &l);
        out_close(o);
        out_end(o);
        return s == VMENC_OK ? EXIT_OK : cli_fail(c, s, "measurements list");
    } else {
        return cli_usage(c, "vmenc cluster measurements add|list|remove|mode ...");
    }
    if (s != VMENC_OK)
        return cli_fail(c, s, "measurements %s", sub);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    if (name != NULL)
        out_str(o, "name", name);
    if (digest != NULL)
        out_str(o, "digest", digest);
    out_end(o);
    return EXIT_OK;
}

const verb_def broker_verbs[] = {
    {"serve", br_serve,
     "--tls-ca F --tls-cert F --tls-key F --endpoints URLS --cacert F --cert F --key F [--name C] [--listen H:P] "
     "[--provider ALIAS] [--id NAME] [--idle-timeout S]",
     "serve the cluster's hosts their KEKs over KMIP (mutual TLS) from this workspace's key provider",
     "Options:\n"
     "  --tls-ca F            CA that signs the hosts' client certificates\n"
     "  --tls-cert, --tls-key the broker's TLS server certificate and key\n"
     "  --endpoints URLS      etcd client URLs of the cluster; --cacert/--cert/--key for etcd\n"
     "  --name C              the cluster (default vmenc)\n"
     "  --listen HOST:PORT    where to listen (default 127.0.0.1:5696; port 0: any free port)\n"
     "  --provider ALIAS      the key provider serving hosts (default: the workspace's only one;\n"
     "                        required when it has several)\n"
     "  --id NAME             this broker's name in the cluster's event list (default broker)\n"
     "Runs until Ctrl-C / SIGTERM. Every release and refusal is audited in this workspace's log and\n"
     "in etcd under /vmenc/C/broker/events/NAME/. docs/broker.md.\n"},
    {"status", br_status, "", "the counters of the broker serving from this workspace, and whether it runs", ""},
    {NULL, NULL, NULL, NULL, NULL},
};
