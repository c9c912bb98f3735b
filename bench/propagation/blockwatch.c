/*
 * blockwatch.c -- a blocking-query consumer of scout's HTTP API, written as
 * a C app would write it (libcurl, jansson): the propagation benchmark's
 * default consumer (bench.py; CONSUMER=py picks blockwatch.py instead).
 *
 * Why: the consumer-visible latency (issue 14) runs from a write to the
 * moment the consumer has the agent's answer.  The Python consumer adds its
 * interpreter's wakeup and http.client's header parse to every answer
 * (docs/performance/change.md: ~0.4 ms p50 from the agent's sendmsg to its
 * stamp), a cost of the consumer's language, not of scout; native consumers
 * (consul-template, Envoy, nginx) do not pay it.  Same protocol as the
 * Python one: one keep-alive connection on the unix socket, each answer's
 * X-Scout-Index asked back; CLOCK_MONOTONIC (writer.c's clock) is stamped
 * as soon as libcurl returns the whole answer, before it is parsed, and one
 * "<ns> +id" / "<ns> -id" line is printed per endpoint of the difference.
 *
 *   blockwatch SOCKET SERVICE
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct buf {
    char  *p;
    size_t len, cap;
};

static long long index_seen;            /* the last answer's X-Scout-Index */

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t
on_body(char *data, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    size_t len = size * n;

    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        char *p;

        while (cap < b->len + len)
            cap *= 2;
        if ((p = realloc(b->p, cap)) == NULL)
            return 0;               /* libcurl fails the transfer */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return len;
}

static size_t
on_header(char *line, size_t size, size_t n, void *ud)
{
    static const char name[] = "X-Scout-Index:";
    size_t len = size * n;

    (void)ud;
    if (len > sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0)
        index_seen = strtoll(line + sizeof(name) - 1, NULL, 10);
    return len;
}

static int
cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of an answer (a JSON array of endpoints), sorted; NULL if it is
 * not one. */
static char **
ids_of(const struct buf *b, int *n_out)
{
    json_t *arr = json_loadb(b->p, b->len, 0, NULL);
    char **ids;
    size_t i, n;

    if (arr == NULL || !json_is_array(arr)) {
        json_decref(arr);
        return NULL;
    }
    n = json_array_size(arr);
    ids = malloc((n ? n : 1) * sizeof(*ids));
    for (i = 0; i < n; i++) {
        const char *id = json_string_value(
            json_object_get(json_array_get(arr, i), "id"));

        ids[i] = strdup(id != NULL ? id : "");
    }
    json_decref(arr);
    qsort(ids, n, sizeof(*ids), cmp);
    *n_out = (int)n;
    return ids;
}

static void
pause_10ms(void)
{
    struct timespec ts = { 0, 10 * 1000 * 1000 };

    nanosleep(&ts, NULL);
}

int
main(int argc, char **argv)
{
    struct buf body = { 0 };
    char **view = NULL, url[512];
    int nview = 0;
    CURL *c;

    if (argc != 3) {
        fprintf(stderr, "usage: blockwatch SOCKET SERVICE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);   /* flushed per answer */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if ((c = curl_easy_init()) == NULL)
        return 1;
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, argv[1]);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    for (;;) {
        long status = 0;
        int64_t now;
        char **ids;
        int n, i = 0, j = 0, k;

        snprintf(url, sizeof(url),
                 "http://localhost/v1/services/%s?index=%lld&wait=60s",
                 argv[2], index_seen);
        curl_easy_setopt(c, CURLOPT_URL, url);
        body.len = 0;
        if (curl_easy_perform(c) != CURLE_OK) {
            pause_10ms();       /* the agent is starting, or went away */
            continue;
        }
        now = now_ns();
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200 || (ids = ids_of(&body, &n)) == NULL) {
            pause_10ms();
            continue;
        }
        while (i < nview || j < n) {
            k = i >= nview ? 1 : j >= n ? -1 : strcmp(view[i], ids[j]);
            if (k < 0)
                printf("%lld -%s\n", (long long)now, view[i++]);
            else if (k > 0)
                printf("%lld +%s\n", (long long)now, ids[j++]);
            else {
                i++;
                j++;
            }
        }
        fflush(stdout);
        for (i = 0; i < nview; i++)
            free(view[i]);
        free(view);
        view = ids;
        nview = n;
    }
}
