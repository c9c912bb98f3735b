/*
 * log.h -- the agent's one logger.  Every line goes to stderr as
 * "TIMESTAMP LEVEL module: message", one event per line, so that journald,
 * docker and plain files all read it the same way.  The ZooKeeper client's
 * own log is routed here too (see session.c).
 *
 * --log-format=json writes one JSON object a line instead ({"ts", "level",
 * "module", "msg"}), for log shippers.  Under systemd (stderr is the
 * $JOURNAL_STREAM) each line starts with its syslog priority, "<3>" to
 * "<7>", so that journalctl -p works, and the timestamp is left to journald.
 */
#ifndef SCOUT_LOG_H
#define SCOUT_LOG_H

#define SCOUT_LOG_ERROR 0
#define SCOUT_LOG_WARN  1
#define SCOUT_LOG_INFO  2
#define SCOUT_LOG_DEBUG 3

#define SCOUT_LOG_TEXT  0
#define SCOUT_LOG_JSON  1

void scout_log_set_level(int level);
/* SCOUT_LOG_TEXT or SCOUT_LOG_JSON. */
void scout_log_set_format(int format);
/* "text" | "json" -> format, or -1 if unknown. */
int  scout_log_parse_format(const char *name);
int  scout_log_get_level(void);
/* "error" | "warn" | "info" | "debug" -> level, or -1 if unknown. */
int  scout_log_parse_level(const char *name);

void scout_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define scout_log_enabled(level) ((level) <= scout_log_get_level())

#endif
