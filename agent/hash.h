/*
 * hash.h -- uthash, with small tables to start with.
 *
 * Every service holds two tables (its children and its endpoints), most of
 * them with a handful of entries, and uthash starts each at 32 buckets: 512
 * bytes before the first entry, 10 MB at 10,000 services.  Eight buckets
 * are enough for the common case and uthash doubles them as a table grows
 * (when a chain reaches 10), so big services lose nothing.  uthash.h does
 * not guard its defaults, and its macros expand where they are used, so
 * redefining them after the include is what takes effect.
 */
#ifndef SCOUT_HASH_H
#define SCOUT_HASH_H

#include <uthash.h>

#undef HASH_INITIAL_NUM_BUCKETS
#undef HASH_INITIAL_NUM_BUCKETS_LOG2
#define HASH_INITIAL_NUM_BUCKETS 8U
#define HASH_INITIAL_NUM_BUCKETS_LOG2 3U

#endif
