/*
 * stats.c -- the one instance of the global counters (see stats.h).
 */
#include "stats.h"

scout_stats_t scout_stats;
