/*
 * log.c -- line-oriented logging to stderr.  Lines are written with a single
 * write(2) so that concurrent writers (the agent and a supervisor's pipe)
 * never interleave within a line.  The logger must never allocate or fail:
 * it is called from error paths.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = SCOUT_LOG_INFO;
static int log_format = SCOUT_LOG_TEXT;
static int journal = -1;        /* stderr is journald's stream: unknown yet */

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static const char *const json_levels[] = { "error", "warn", "info", "debug" };
/* sd-daemon(3) priorities: err, warning, info, debug */
static const char *const priorities[] = { "<3>", "<4>", "<6>", "<7>" };

void
scout_log_set_format(int format)
{
    log_format = format;
}

int
scout_log_parse_format(const char *name)
{
    return strcmp(name, "text") == 0 ? SCOUT_LOG_TEXT
           : strcmp(name, "json") == 0 ? SCOUT_LOG_JSON : -1;
}

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected; it only
 * counts if that is still our stderr (a child may inherit the variable
 * with stderr redirected elsewhere). */
static int
on_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    return v != NULL && sscanf(v, "%llu:%llu", &dev, &ino) == 2
           && fstat(STDERR_FILENO, &st) == 0
           && (unsigned long long)st.st_dev == dev
           && (unsigned long long)st.st_ino == ino;
}

/* Length of the valid UTF-8 sequence at s (at most len bytes), or 0. */
static int
utf8_len(const unsigned char *s, int len)
{
    int need = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
               : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;

    if (need == 0 || need > len)
        return 0;
    for (int i = 1; i < need; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f)
        || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;                       /* overlong, surrogate, > U+10FFFF */
    return need;
}

/* JSON string body of src into dst (no allocation: the logger may run on
 * an out-of-memory path); returns the bytes written, never past cap.
 * Messages quote znode data, so bytes that are not UTF-8 become U+FFFD
 * rather than a line a JSON reader refuses. */
static int
json_escape(char *dst, int cap, const char *src, int len)
{
    int n = 0;

    for (int i = 0; i < len && n < cap - 7; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c == '\n') {
            dst[n++] = '\\';
            dst[n++] = 'n';
        } else if (c < 0x20) {
            n += snprintf(dst + n, (size_t)(cap - n), "\\u%04x", c);
        } else if (c < 0x80) {
            dst[n++] = (char)c;
        } else {
            int k = utf8_len((const unsigned char *)src + i, len - i);

            if (k == 0) {
                n += snprintf(dst + n, (size_t)(cap - n), "\\ufffd");
            } else {
                memcpy(dst + n, src + i, (size_t)k);
                n += k;
                i += k - 1;
            }
        }
    }
    return n;
}

void
scout_log_set_level(int level)
{
    log_level = level;
}

int
scout_log_get_level(void)
{
    return log_level;
}

int
scout_log_parse_level(const char *name)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void
scout_log(int level, const char *module, const char *fmt, ...)
{
    char line[4096], msg[2048], ts[40];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n = 0, m;

    if (level > log_level)
        return;
    if (journal < 0)
        journal = on_journal();
    va_start(ap, fmt);
    m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if (m > (int)sizeof(msg) - 1)
        m = (int)sizeof(msg) - 1;
    /* Strip trailing newlines from callers (ZooKeeper's messages have one). */
    while (m > 0 && (msg[m - 1] == '\n' || msg[m - 1] == '\r'))
        m--;
    msg[m] = '\0';
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03dZ",
             (int)(tv.tv_usec / 1000));
    n = journal ? snprintf(line, sizeof(line), "%s", priorities[level]) : 0;
    if (log_format == SCOUT_LOG_JSON) {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "{\"ts\":\"%s\","
                      "\"level\":\"%s\",\"module\":\"", ts,
                      json_levels[level]);
        n += json_escape(line + n, (int)sizeof(line) - n - 16, module,
                         (int)strlen(module));
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\",\"msg\":\"");
        n += json_escape(line + n, (int)sizeof(line) - n - 4, msg, m);
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\"}");
    } else if (journal) {           /* journald stamps the time itself */
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s: %s", module,
                      msg);
    } else {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s %-5s %s: %s",
                      ts, level_names[level], module, msg);
    }
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nothing sensible to do: stderr is gone */
    }
}
