/*
 * tests/support/latency_proxy.c - a TCP relay that delays what the server
 * sends (latency_proxy.h describes it). Per connection one thread copies
 * the client's bytes to the server at once; another reads the server's
 * bytes into a queue stamped with their due time and writes each chunk to
 * the client when it is due, so the delay is a latency, not a rate: a
 * chunk that arrives while an earlier one waits is not delayed twice.
 *
 * Safety rule: every socket and thread the proxy opens is closed and
 * joined by latency_proxy_stop, also when a test failed midway.
 */
#define _GNU_SOURCE /* accept4 */
#include "latency_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define CHUNK_MAX 16384

typedef struct chunk {
    struct chunk *next;
    uint64_t due;
    size_t len;
    uint8_t data[];
} chunk;

typedef struct conn {
    struct latency_proxy *p;
    int cfd, sfd;
    pthread_t up, down;
} conn;

struct latency_proxy {
    int lfd;
    uint16_t port, to_port;
    _Atomic uint32_t delay_ms;
    atomic_bool stop;
    pthread_t acceptor;
    conn *conns[MAX_CONNS];
    size_t num_conns; /* the acceptor's until it is joined */
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool write_all(int fd, const uint8_t *b, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* up: the client's bytes to the server, at once. */
static void *up_main(void *arg) {
    conn *c = arg;
    uint8_t buf[CHUNK_MAX];
    for (;;) {
        ssize_t n = recv(c->cfd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || !write_all(c->sfd, buf, (size_t)n))
            break;
    }
    shutdown(c->sfd, SHUT_WR);
    return NULL;
}

/* down: the server's bytes to the client, each chunk delay_ms after it
 * arrived. */
static void *down_main(void *arg) {
    conn *c = arg;
    chunk *head = NULL, **tail = &head;
    bool server_open = true, ok = true;
    while (ok && !atomic_load(&c->p->stop) && (server_open || head != NULL)) {
        uint64_t now = now_ms();
        while (head != NULL && head->due <= now) {
            chunk *h = head;
            ok = write_all(c->cfd, h->data, h->len);
            head = h->next;
            if (head == NULL)
                tail = &head;
            free(h);
            if (!ok)
                break;
        }
        if (!ok)
            break;
        int timeout = 50; /* look at the stop flag at least this often */
        if (head != NULL && head->due - now < (uint64_t)timeout)
            timeout = (int)(head->due - now);
        struct pollfd pf = {.fd = c->sfd, .events = POLLIN};
        int r = poll(&pf, server_open ? 1 : 0, timeout);
        if (r <= 0 || !server_open)
            continue;
        chunk *k = malloc(sizeof(*k) + CHUNK_MAX);
        if (k == NULL)
            break;
        ssize_t n = recv(c->sfd, k->data, CHUNK_MAX, 0);
        if (n <= 0) {
            free(k);
            if (n < 0 && errno == EINTR)
                continue;
            server_open = false;
            continue;
        }
        k->len = (size_t)n;
        k->due = now_ms() + atomic_load(&c->p->delay_ms);
        k->next = NULL;
        *tail = k;
        tail = &k->next;
    }
    while (head != NULL) {
        chunk *h = head;
        head = h->next;
        free(h);
    }
    shutdown(c->cfd, SHUT_WR);
    return NULL;
}

static int connect_server(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void *accept_main(void *arg) {
    struct latency_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf = {.fd = p->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int sfd = p->num_conns < MAX_CONNS ? connect_server(p->to_port) : -1;
        conn *c = sfd >= 0 ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            if (sfd >= 0)
                close(sfd);
            close(cfd);
            continue;
        }
        c->p = p;
        c->cfd = cfd;
        c->sfd = sfd;
        if (pthread_create(&c->up, NULL, up_main, c) != 0) {
            close(cfd);
            close(sfd);
            free(c);
            continue;
        }
        if (pthread_create(&c->down, NULL, down_main, c) != 0) {
            shutdown(cfd, SHUT_RDWR);
            pthread_join(c->up, NULL);
            close(cfd);
            close(sfd);
            free(c);
            continue;
        }
        p->conns[p->num_conns++] = c;
    }
    return NULL;
}

int latency_proxy_start(uint16_t to_port, uint32_t delay_ms, latency_proxy **out) {
    struct latency_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->to_port = to_port;
    atomic_store(&p->delay_ms, delay_ms);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(p->lfd, 16) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &al) != 0 || pthread_create(&p->acceptor, NULL, accept_main, p) != 0) {
        int e = errno;
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        errno = e;
        return -1;
    }
    p->port = ntohs(a.sin_port);
    *out = p;
    return 0;
}

uint16_t latency_proxy_port(const latency_proxy *p) { return p->port; }

void latency_proxy_set_delay(latency_proxy *p, uint32_t delay_ms) { atomic_store(&p->delay_ms, delay_ms); }

void latency_proxy_stop(latency_proxy *p) {
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->acceptor, NULL);
    close(p->lfd);
    for (size_t i = 0; i < p->num_conns; i++) {
        conn *c = p->conns[i];
        shutdown(c->cfd, SHUT_RDWR);
        shutdown(c->sfd, SHUT_RDWR);
        pthread_join(c->up, NULL);
        pthread_join(c->down, NULL);
        close(c->cfd);
        close(c->sfd);
        free(c);
    }
    free(p);
}
