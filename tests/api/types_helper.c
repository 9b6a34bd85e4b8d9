// Scenarios of test_types.c that end a process: misuse of typed blocks (each prints
// "ptr=<pointer>" before the call that must abort, and "survived" if it returns), the unloading
// of a shared object whose type still has blocks (argv[2] names types_plugin.so), and a type
// still holding blocks at exit.
#define _GNU_SOURCE
#include "test_frontend.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"

SMP_TYPE_DEFINE(M_CONN, "conn", "client connections");
SMP_TYPE_DEFINE(M_BUF, "buf", "request buffers");
SMP_TYPE_DEFINE_FLAGS(M_OWN, "own", "objects kept in pages of their own", SMP_TYPE_OWN_HEAP);

static void about_to(void *p) {
  printf("ptr=%p\n", p);
  fflush(stdout);
}

static int unload(const char *plugin) {
  void *so = dlopen(plugin, RTLD_NOW);
  if (so == NULL) return printf("dlopen: %s\n", dlerror()), 2;
  void *(*plugin_alloc)(size_t, int) = (void *(*)(size_t, int))dlsym(so, "plugin_alloc");
  void *blocks[3];
  for (int i = 0; i < 3; i++) blocks[i] = plugin_alloc(100, 0);
  free(plugin_alloc(100, 1)); // a block of plugin_clean, freed: nothing left of that type
  dlclose(so);                // the plugin's destructor reports "plugin"
  smp_type_t *ghost = smp_type_of(blocks[0]);
  smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
  if (ghost == NULL || smp_type_stats_get(ghost, &s) != 0) return printf("no type after unload\n"), 3;
  printf("after unload: blocks %lu loaded %u name %s\n", (unsigned long)s.blocks, s.loaded, ghost->name);
  for (int i = 0; i < 3; i++) free(blocks[i]); // still valid, still counted
  so = dlopen(plugin, RTLD_NOW);
  plugin_alloc = (void *(*)(size_t, int))dlsym(so, "plugin_alloc");
  void *p = plugin_alloc(100, 0);
  smp_type_t *t = smp_type_of(p);
  if (t == NULL || smp_type_stats_get(t, &s) != 0) return printf("no type after reload\n"), 4;
  free(p);
  smp_type_stats_get(t, &s);
  if (s.requests == 4 && s.loaded == 1) // the three before the unload and this one
    printf("reloaded: same entry, blocks %lu\n", (unsigned long)s.blocks);
  dlclose(so);
  return 0;
}

int main(int argc, char **argv) {
  if (!test_frontend_check("api_types_helper", stdout)) return 94;
  const char *what = argc > 1 ? argv[1] : "";
  if (strcmp(what, "unload") == 0) return unload(argc > 2 ? argv[2] : "");
  if (strcmp(what, "exit_with_blocks") == 0) {
    void *volatile a = smp_malloc_type(100, M_CONN, 0), *volatile b = smp_malloc_type(90, M_CONN, 0);
    (void)a;
    (void)b;
    return 0;
  }
  if (strncmp(what, "own_", 4) == 0) { // the same misuse of a type with its own heap
    char *o = smp_malloc_type(100, M_OWN, 0);
    if (strcmp(what, "own_double_free") == 0) {
      smp_free_type(o, M_OWN);
      about_to(o);
      smp_free_type(o, M_OWN);
    } else if (strcmp(what, "own_double_free_plain") == 0) {
      free(o);
      about_to(o);
      free(o);
    } else if (strcmp(what, "own_wrong_type") == 0) {
      about_to(o);
      smp_free_type(o, M_BUF);
    } else if (strcmp(what, "own_untyped") == 0) {
      void *q = malloc(100);
      about_to(q);
      smp_free_type(q, M_OWN);
    } else if (strcmp(what, "own_interior") == 0) {
      about_to(o + 16);
      free(o + 16);
    } else if (strcmp(what, "own_type_of_freed") == 0) {
      free(o);
      about_to(o);
      (void)smp_type_of(o);
    } else {
      printf("unknown scenario %s\n", what);
      return 2;
    }
    printf("survived\n");
    return 1;
  }
  char *p = smp_malloc_type(100, M_CONN, 0);
  if (strcmp(what, "wrong_type") == 0) {
    about_to(p);
    smp_free_type(p, M_BUF);
  } else if (strcmp(what, "untyped") == 0) {
    void *q = malloc(100);
    about_to(q);
    smp_free_type(q, M_CONN);
  } else if (strcmp(what, "realloc_wrong_type") == 0) {
    about_to(p);
    p = smp_realloc_type(p, 5000, M_BUF, 0);
  } else if (strcmp(what, "double_free") == 0) {
    smp_free_type(p, M_CONN);
    about_to(p);
    smp_free_type(p, M_CONN);
  } else if (strcmp(what, "double_free_aligned_reused") == 0) {
    // The second free of an aligned typed pointer, after its block went to an untyped malloc:
    // the new owner's block must not be freed under it.
    char *a = smp_malloc_type(100, M_CONN, SMP_ALIGN(64));
    free(a);
    char *u = smp_mallocx(164, SMP_ALIGN(64));
    if (u != a - 64) {
      printf("layout not reached (%p, %p)\n", (void *)a, (void *)u);
      return 3;
    }
    about_to(a);
    free(a);
  } else if (strcmp(what, "interior") == 0) {
    about_to(p + 16);
    free(p + 16);
  } else {
    printf("unknown scenario %s\n", what);
    return 2;
  }
  printf("survived\n");
  return 1;
}
