// Layer: cross-cutting. The option table, read once at start-up from SMPALLOC_OPTIONS.
// Syntax: "name:value,name:value". An unknown name or a bad value prints one warning and is
// ignored; parsing never allocates. Values are plain globals read without synchronisation
// after start-up (they are written before the first thread can exist).
#ifndef SMP_OPTIONS_H
#define SMP_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

enum smp_frontend_choice { SMP_FRONTEND_AUTO, SMP_FRONTEND_THREAD, SMP_FRONTEND_PERCPU };
enum smp_purge_choice { SMP_PURGE_DONTNEED, SMP_PURGE_FREE };
enum smp_background_choice { SMP_BACKGROUND_OFF, SMP_BACKGROUND_ON, SMP_BACKGROUND_AUTO };
#define SMP_OPTIONS_PATH_MAX 256 // a path option's value, its NUL included

typedef struct smp_options {
  bool stats;        // print statistics at exit
  bool debug;        // no caching: freed blocks go straight back to their spans
  size_t cache_size; // cache budget in bytes: per thread, or per CPU cache
  size_t frontend;   // enum smp_frontend_choice
  size_t decay_ms;   // free pages older than this go back to the OS; 0: only on trim
  size_t dirty_pct;  // dirty free pages beyond this % of pages in use go back at once; 0: no bound
  size_t purge;      // enum smp_purge_choice: how decayed pages go back
  size_t background; // enum smp_background_choice: the thread for decay and idle caches
  bool thp;          // chunks may be backed by transparent huge pages
  size_t huge_cache; // freed huge mappings kept for reuse, per heap (large.c); 0: none
  size_t stats_signal; // the signal that writes the statistics report (report.c); 0: none
  char stats_file[SMP_OPTIONS_PATH_MAX]; // where it writes it (appended); "": stderr
  size_t rcu_stall;  // smp_free_rcu: bytes waiting for a grace period past which it warns; 0: never
  bool junk;         // hardening (harden.h): fill blocks on malloc and free, check on reuse
  bool zero_free;    // hardening: clear freed blocks
  size_t redzone;    // hardening: canary bytes after every block
  size_t quarantine; // hardening: bytes of freed blocks held back from reuse
  char leaks[SMP_OPTIONS_PATH_MAX]; // hardening: "1" (stderr) or a path: the leak report at exit
  char prof[SMP_OPTIONS_PATH_MAX];  // profiler (prof.h): "1" or a path prefix for its profiles
  size_t prof_sample; // profiler: mean bytes between samples
  size_t prof_signal; // profiler: the signal that asks for a profile; 0: none
} smp_options_t;

extern SMP_HIDDEN smp_options_t smp_options;

// One option as set, for the statistics: its value as a number (a boolean, a size, a signal)
// or as text (a choice's name, a path).
typedef struct smp_option_value {
  const char *name;
  bool is_bool;
  const char *text; // NULL: the value is number
  size_t number;
} smp_option_value_t;
// Call fn for every option, in the table's order.
void smp_options_each(void (*fn)(const smp_option_value_t *v, void *arg), void *arg);

// Parse spec (may be NULL) into smp_options, starting from the defaults.
void smp_options_parse(const char *spec);
// Whether every item of spec (NULL: false, why empty) names an option with a valid value,
// without applying any; when not, why (why_len bytes) says which item and why
// (smp_options_check, the public form).
bool smp_options_valid(const char *spec, char *why, size_t why_len);
// Reset every option to its default (tests).
void smp_options_reset(void);

#endif
