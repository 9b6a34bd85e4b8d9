// Loaded with dlopen by harden_helper's "leaks" scenario: a leak from a library of its own.
#include <stdlib.h>

void *leak_plugin_alloc(size_t n);
void *leak_plugin_alloc(size_t n) {
  void *p = malloc(n);
  __asm__ volatile("" : : "r"(p) : "memory"); // p used after the call: no tail call, a frame
  return p;
}
