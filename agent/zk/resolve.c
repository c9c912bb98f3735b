/*
 * resolve.c -- host names of the connect string resolved on a worker thread.
 *
 * getaddrinfo() blocks for as long as the DNS server takes; the C client
 * calls it inside zookeeper_init() and on every connection loss, i.e. on our
 * loop.  Here one detached thread per resolution does the lookups and posts
 * the result back with an ev_async; the loop then gives the client IP
 * literals only.  A job outlives its owner if the owner is freed while the
 * lookup still blocks: the thread frees it (the `abandoned` flag under the
 * job's mutex decides who does).
 */
#include "zk/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "scout.h"
#include "stats.h"

#define RETRY_SECONDS 1.0       /* no address yet: try again this soon, */
#define RETRY_MAX_SECONDS 30.0  /* doubling up to this */

struct job {
    pthread_mutex_t  mu;
    struct ev_loop  *loop;
    ev_async        *async;     /* the owner's; valid while !abandoned */
    char            *spec;      /* "h:p,h:p", no chroot */
    char            *result;    /* "ip:p,ip:p" sorted, or NULL */
    char             err[256];
    int              done;
    int              abandoned;
};

struct scout_resolve_s {
    struct ev_loop  *loop;
    ev_async         async;
    ev_timer         timer;     /* periodic re-resolution / retry */
    double           every;
    double           retry;     /* the next retry's delay, 0 = none due */
    char            *spec;
    char            *chroot;
    char            *hosts;     /* the latest IP-literal list */
    int              literal;   /* every host is an IP literal */
    struct job      *job;       /* the resolution in flight */
    scout_resolve_fn fn;
    void            *ud;
};

/* Split "host:port" (host may be "[v6]") in place; NULL port if none. */
static void
split_host(char *entry, char **host, char **port)
{
    char *colon = strrchr(entry, ':');

    *host = entry;
    *port = NULL;
    if (entry[0] == '[') {
        char *close = strchr(entry, ']');
        if (close != NULL) {
            *close = '\0';
            *host = entry + 1;
            if (close[1] == ':')
                *port = close + 2;
            return;
        }
    }
    if (colon != NULL && strchr(entry, ':') == colon) {
        *colon = '\0';
        *port = colon + 1;
    }
}

static int
is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1
           || inet_pton(AF_INET6, host, buf) == 1;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append "ip:port" strings for one host to *v.  IPv4 addresses are preferred:
 * IPv6 ones are used only for a name that has no IPv4 address. */
static int
lookup(const char *host, const char *port, char ***v, size_t *n, char *err,
       size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    int rc, have4 = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
        return SCOUT_ERROR;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next)
        have4 |= ai->ai_family == AF_INET;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN], *s, **nv;
        const void *addr;
        int len;

        if (ai->ai_family == AF_INET)
            addr = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6 && !have4)
            addr = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        else
            continue;
        if (inet_ntop(ai->ai_family, addr, ip, sizeof(ip)) == NULL)
            continue;
        len = snprintf(NULL, 0, ai->ai_family == AF_INET6 ? "[%s]:%s"
                                                         : "%s:%s", ip, port);
        s = malloc((size_t)len + 1);
        nv = realloc(*v, (*n + 1) * sizeof(**v));
        if (s == NULL || nv == NULL) {
            free(s);
            if (nv != NULL)
                *v = nv;
            freeaddrinfo(res);
            snprintf(err, errlen, "out of memory");
            return SCOUT_ERROR;
        }
        snprintf(s, (size_t)len + 1, ai->ai_family == AF_INET6 ? "[%s]:%s"
                                                              : "%s:%s",
                 ip, port);
        *v = nv;
        (*v)[(*n)++] = s;
    }
    freeaddrinfo(res);
    return SCOUT_OK;
}

/* "h:p,h:p" -> sorted, de-duplicated "ip:p,ip:p"; NULL when nothing
 * resolved (err says why).  Runs on the worker thread: no logging, no
 * globals. */
static char *
resolve_all(const char *spec, char *err, size_t errlen)
{
    char *copy = strdup(spec), *save = NULL, *entry, *out = NULL;
    char **v = NULL;
    size_t n = 0, len = 0;

    err[0] = '\0';
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (entry = strtok_r(copy, ",", &save); entry != NULL;
         entry = strtok_r(NULL, ",", &save)) {
        char *host, *port;

        split_host(entry, &host, &port);
        if (port == NULL || *host == '\0') {
            snprintf(err, errlen, "%s: no port", host);
            continue;
        }
        (void)lookup(host, port, &v, &n, err, errlen);
    }
    free(copy);
    if (n > 0) {
        qsort(v, n, sizeof(*v), cmp_str);
        for (size_t i = 0; i < n; i++)
            len += strlen(v[i]) + 1;
        out = malloc(len);
    }
    if (out != NULL) {
        char *p = out;

        for (size_t i = 0; i < n; i++) {
            if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
                continue;
            if (p != out)
                *p++ = ',';
            p = stpcpy(p, v[i]);
        }
    } else if (n > 0) {
        snprintf(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return out;
}

static void
job_free(struct job *j)
{
    pthread_mutex_destroy(&j->mu);
    free(j->spec);
    free(j->result);
    free(j);
}

static void *
worker(void *arg)
{
    struct job *j = arg;
    char err[sizeof(j->err)];
    char *out = resolve_all(j->spec, err, sizeof(err));
    int gone;

    pthread_mutex_lock(&j->mu);
    j->result = out;
    memcpy(j->err, err, sizeof(err));
    j->done = 1;
    gone = j->abandoned;
    if (!gone)
        ev_async_send(j->loop, j->async);
    pthread_mutex_unlock(&j->mu);
    if (gone)
        job_free(j);
    return NULL;
}

static void
start_job(scout_resolve_t *r)
{
    struct job *j;
    pthread_t tid;
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

    if (r->literal || r->job != NULL)
        return;
    j = calloc(1, sizeof(*j));
    if (j == NULL || (j->spec = strdup(r->spec)) == NULL) {
        free(j);
        scout_log(SCOUT_LOG_ERROR, "resolve", "out of memory; retrying");
        ev_timer_set(&r->timer, RETRY_SECONDS, 0.);
        ev_timer_start(r->loop, &r->timer);
        return;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->loop = r->loop;
    j->async = &r->async;
    /* the thread takes no signals: they belong to the loop */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, worker, j);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        job_free(j);
        scout_log(SCOUT_LOG_ERROR, "resolve", "cannot start a resolver "
                  "thread: %s; retrying", strerror(rc));
        ev_timer_set(&r->timer, RETRY_SECONDS, 0.);
        ev_timer_start(r->loop, &r->timer);
        return;
    }
    scout_stats.zk_name_resolutions++;
    ev_timer_stop(r->loop, &r->timer);
    r->job = j;
}

static void
on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    scout_resolve_t *r = w->data;
    struct job *j = r->job;
    char *out;
    (void)revents;

    if (j == NULL)
        return;
    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        pthread_mutex_unlock(&j->mu);
        return;
    }
    pthread_mutex_unlock(&j->mu);
    r->job = NULL;
    out = j->result;
    j->result = NULL;
    if (out == NULL) {
        r->retry = r->retry == 0 ? RETRY_SECONDS
                   : r->retry * 2 > RETRY_MAX_SECONDS ? RETRY_MAX_SECONDS
                   : r->retry * 2;
        scout_log(SCOUT_LOG_WARN, "resolve", "no address for the ZooKeeper "
                  "servers %s (%s); retrying in %.0f s", r->spec, j->err,
                  r->hosts == NULL ? r->retry : r->every);
    } else if (j->err[0] != '\0') {
        scout_log(SCOUT_LOG_WARN, "resolve", "ZooKeeper servers: %s; "
                  "using the others", j->err);
    }
    job_free(j);
    if (out != NULL)
        r->retry = 0;
    ev_timer_set(&r->timer, out == NULL && r->hosts == NULL ? r->retry
                                                            : r->every, 0.);
    ev_timer_start(loop, &r->timer);
    if (out == NULL)
        return;
    if (r->hosts != NULL && strcmp(out, r->hosts) == 0) {
        free(out);
        return;
    }
    scout_log(SCOUT_LOG_INFO, "resolve", "ZooKeeper servers %s are %s",
              r->spec, out);
    free(r->hosts);
    r->hosts = out;
    r->fn(r->ud, r->hosts);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    start_job(w->data);
}

static int
all_literal(const char *spec)
{
    char *copy = strdup(spec), *save = NULL, *entry;
    int ok = copy != NULL;

    for (entry = ok ? strtok_r(copy, ",", &save) : NULL; entry != NULL;
         entry = strtok_r(NULL, ",", &save)) {
        char *host, *port;

        split_host(entry, &host, &port);
        if (!is_literal(host))
            ok = 0;
    }
    free(copy);
    return ok;
}

scout_resolve_t *
scout_resolve_new(struct ev_loop *loop, const char *servers, double every,
                  scout_resolve_fn fn, void *ud, char *err)
{
    scout_resolve_t *r = calloc(1, sizeof(*r));
    const char *slash = strchr(servers, '/');
    size_t hlen = slash ? (size_t)(slash - servers) : strlen(servers);

    if (r == NULL)
        goto oom;
    r->loop = loop;
    r->fn = fn;
    r->ud = ud;
    r->every = every > 0 ? every : 60.0;
    r->spec = strndup(servers, hlen);
    r->chroot = strdup(slash ? slash : "");
    if (r->spec == NULL || r->chroot == NULL)
        goto oom;
    ev_async_init(&r->async, on_async);
    r->async.data = r;
    ev_async_start(loop, &r->async);
    ev_init(&r->timer, on_timer);
    r->timer.data = r;
    r->literal = all_literal(r->spec);
    if (r->literal) {
        r->hosts = strdup(r->spec);
        if (r->hosts == NULL)
            goto oom;
        return r;
    }
    start_job(r);
    return r;

oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
    scout_resolve_free(r);
    return NULL;
}

void
scout_resolve_free(scout_resolve_t *r)
{
    if (r == NULL)
        return;
    if (r->job != NULL) {
        struct job *j = r->job;
        int done;

        pthread_mutex_lock(&j->mu);
        done = j->done;
        j->abandoned = 1;
        pthread_mutex_unlock(&j->mu);
        if (done)
            job_free(j);
    }
    if (r->loop != NULL) {      /* stopping a zeroed watcher is a no-op */
        ev_async_stop(r->loop, &r->async);
        ev_timer_stop(r->loop, &r->timer);
    }
    free(r->spec);
    free(r->chroot);
    free(r->hosts);
    free(r);
}

void
scout_resolve_refresh(scout_resolve_t *r)
{
    start_job(r);
}

const char *
scout_resolve_hosts(const scout_resolve_t *r)
{
    return r->hosts;
}

const char *
scout_resolve_chroot(const scout_resolve_t *r)
{
    return r->chroot;
}
