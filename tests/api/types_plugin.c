// A shared object that defines malloc types, loaded and unloaded by types_helper.c: its types
// are unregistered by the destructors SMP_TYPE_DEFINE writes when it is unloaded.
#include <stddef.h>

#include "smpalloc.h"

SMP_TYPE_DEFINE(M_PLUGIN, "plugin", "blocks of a loaded plugin");
SMP_TYPE_DEFINE(M_PLUGIN_CLEAN, "plugin_clean", "a plugin type with nothing left");

__attribute__((visibility("default"))) void *plugin_alloc(size_t size, int clean) {
  return smp_malloc_type(size, clean ? M_PLUGIN_CLEAN : M_PLUGIN, 0);
}
