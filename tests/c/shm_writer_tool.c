/*
 * shm_writer_tool.c -- test-only: publish shared-memory snapshots described
 * on stdin, so that tests/lua/30_shm_spec.lua can check the FFI reader
 * against the agent's real writer (agent/publish/shm.c).
 *
 *   shm_writer_tool PATH [--unlink] [--format N] < script
 *
 * One command per line; tokens split on spaces, each percent-decoded
 * (%20, %00 ...), a lone "-" being the empty string:
 *
 *   service NAME PATH STATE INDEX SETTINGS
 *   ep ID HOST PORT WEIGHT STATUS ZXID [KEY VALUE]...   (to the last service)
 *   bulk NSVC NEPS TAG      NSVC services "bulk-%05d" of NEPS endpoints each
 *   publish                 publish the services declared since the last
 *                           publish; prints "generation N"
 *
 * The file is opened as the agent opens it (an existing one is adopted, so
 * generations continue across runs) and closed without unlinking unless
 * --unlink is given.  --format 1 writes format version 1 (an older agent's,
 * or `shm { format = 1 }`), replacing a version 2 file, and back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"
#include "publish/shm.h"

#define MAX_TOK 64

typedef struct {
    char *s;
    size_t len;
} tok_t;

static int
hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Split line in place into percent-decoded tokens. */
static int
split(char *line, tok_t *tok)
{
    int n = 0;
    char *p = line;

    while (*p != '\0' && n < MAX_TOK) {
        char *start, *out;
        int raw_dash;

        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == '\0')
            break;
        start = out = p;
        raw_dash = p[0] == '-' && (p[1] == '\0' || p[1] == ' '
                                   || p[1] == '\t' || p[1] == '\n'
                                   || p[1] == '\r');
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n'
               && *p != '\r') {
            if (*p == '%' && hex(p[1]) >= 0 && hex(p[2]) >= 0) {
                *out++ = (char)(hex(p[1]) * 16 + hex(p[2]));
                p += 3;
            } else {
                *out++ = *p++;
            }
        }
        if (*p != '\0')
            p++;
        tok[n].s = start;
        tok[n].len = (size_t)(out - start);
        if (raw_dash)
            tok[n].len = 0;
        start[tok[n].len] = '\0';
        n++;
    }
    return n;
}

static char *
dup_tok(const tok_t *t)
{
    char *s = malloc(t->len + 1);

    memcpy(s, t->s, t->len);
    s[t->len] = '\0';
    return s;
}

typedef struct {
    scout_shm_service_t *svcs;
    scout_epset_t      **sets;
    char               **owned;   /* strings to free after the publish */
    int                  n, cap, nowned, owned_cap;
} batch_t;

static char *
keep(batch_t *b, char *s)
{
    if (b->nowned == b->owned_cap) {
        b->owned_cap = b->owned_cap ? b->owned_cap * 2 : 64;
        b->owned = realloc(b->owned, (size_t)b->owned_cap * sizeof(char *));
    }
    b->owned[b->nowned++] = s;
    return s;
}

static scout_shm_service_t *
add_service(batch_t *b)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->svcs = realloc(b->svcs, (size_t)b->cap * sizeof(*b->svcs));
        b->sets = realloc(b->sets, (size_t)b->cap * sizeof(*b->sets));
    }
    b->sets[b->n] = calloc(1, sizeof(scout_epset_t));
    scout_epset_init(b->sets[b->n]);
    memset(&b->svcs[b->n], 0, sizeof(b->svcs[b->n]));
    b->svcs[b->n].eps = b->sets[b->n];
    return &b->svcs[b->n++];
}

static void
batch_clear(batch_t *b)
{
    for (int i = 0; i < b->n; i++) {
        scout_epset_free(b->sets[i]);
        free(b->sets[i]);
    }
    for (int i = 0; i < b->nowned; i++)
        free(b->owned[i]);
    b->n = 0;
    b->nowned = 0;
}

static scout_endpoint_t *
ep_new(const char *id, const char *host, int port, int weight,
       const char *status, int64_t zxid, int nmeta)
{
    scout_endpoint_t *ep = scout_endpoint_new(id, strlen(id), host,
                                              strlen(host), status,
                                              strlen(status));

    ep->port = port;
    ep->weight = weight;
    ep->zxid = zxid;
    ep->nmeta = nmeta;
    ep->meta = nmeta > 0 ? calloc((size_t)nmeta, sizeof(*ep->meta)) : NULL;
    return ep;
}

static void
bulk(batch_t *b, int nsvc, int neps, const char *tag)
{
    char buf[64];

    for (int i = 0; i < nsvc; i++) {
        scout_shm_service_t *s = add_service(b);

        snprintf(buf, sizeof(buf), "bulk-%05d", i);
        s->name = keep(b, strdup(buf));
        s->path = keep(b, strdup("/bulk"));
        s->state = "synced";
        s->index = (uint64_t)i;
        s->settings = keep(b, strdup(tag));
        s->settings_len = strlen(tag);
        for (int e = 0; e < neps; e++) {
            scout_endpoint_t *ep;

            snprintf(buf, sizeof(buf), "10.%d.%d.%d:8080", i / 250, i % 250,
                     e);
            ep = ep_new(buf, tag, 8080 + e, 100, "up", (int64_t)e, 2);
            ep->meta[0].key = strdup("tag");
            ep->meta[0].value = strdup(tag);
            ep->meta[1].key = strdup("zone");
            ep->meta[1].value = strdup(e % 2 ? "b" : "a");
            scout_epset_put((scout_epset_t *)s->eps, ep);
        }
    }
}

int
main(int argc, char **argv)
{
    char err[SCOUT_ERR_LEN], line[65536];
    tok_t tok[MAX_TOK];
    batch_t b;
    scout_shm_t *shm;
    int lineno = 0, unlink_file = 0, format = 2;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--unlink") == 0)
            unlink_file = 1;
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = atoi(argv[++i]);
        else
            argc = 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [--unlink] [--format N] < script\n",
                argv[0]);
        return 2;
    }
    shm = scout_shm_open_version(argv[1], format, err);
    if (shm == NULL) {
        fprintf(stderr, "shm_writer_tool: %s\n", err);
        return 1;
    }
    memset(&b, 0, sizeof(b));
    while (fgets(line, sizeof(line), stdin) != NULL) {
        int n = split(line, tok);

        lineno++;
        if (n == 0)
            continue;
        if (strcmp(tok[0].s, "service") == 0 && n == 6) {
            scout_shm_service_t *s = add_service(&b);
            s->name = keep(&b, dup_tok(&tok[1]));
            s->path = keep(&b, dup_tok(&tok[2]));
            s->state = keep(&b, dup_tok(&tok[3]));
            s->index = strtoull(tok[4].s, NULL, 10);
            s->settings = keep(&b, dup_tok(&tok[5]));
            s->settings_len = tok[5].len;
        } else if (strcmp(tok[0].s, "ep") == 0 && n >= 7 && n % 2 == 1
                   && b.n > 0) {
            scout_endpoint_t *ep = ep_new(tok[1].s, tok[2].s,
                                          atoi(tok[3].s), atoi(tok[4].s),
                                          tok[5].s,
                                          strtoll(tok[6].s, NULL, 10),
                                          (n - 7) / 2);
            for (int j = 0; j < ep->nmeta; j++) {
                ep->meta[j].key = dup_tok(&tok[7 + 2 * j]);
                ep->meta[j].value = dup_tok(&tok[8 + 2 * j]);
            }
            scout_epset_put(b.sets[b.n - 1], ep);
        } else if (strcmp(tok[0].s, "bulk") == 0 && n == 4) {
            bulk(&b, atoi(tok[1].s), atoi(tok[2].s), tok[3].s);
        } else if (strcmp(tok[0].s, "publish") == 0 && n == 1) {
            if (scout_shm_publish(shm, b.svcs, b.n, err) != SCOUT_OK) {
                fprintf(stderr, "shm_writer_tool: line %d: %s\n", lineno,
                        err);
                return 1;
            }
            printf("generation %" PRIu64 "\n", scout_shm_generation(shm));
            fflush(stdout);
            batch_clear(&b);
        } else {
            fprintf(stderr, "shm_writer_tool: line %d: bad command\n",
                    lineno);
            return 1;
        }
    }
    batch_clear(&b);
    free(b.svcs);
    free(b.sets);
    free(b.owned);
    scout_shm_close(shm, unlink_file);
    return 0;
}
