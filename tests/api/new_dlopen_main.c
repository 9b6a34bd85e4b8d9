// A C program (no libstdc++) linked with smpalloc that dlopens a C++ plugin with RTLD_LOCAL
// and runs its operator new checks (new_dlopen_plugin.cc). Exit 0 when they pass.
// Usage: new_dlopen_main <path/to/plugin.so>
#include "test_frontend.h"

#include <dlfcn.h>
#include <stdio.h>

#include "smpalloc.h"

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  // A call into the library, so the linker keeps it even with --as-needed: malloc and operator
  // new are then smpalloc's for the whole process, the plugin included.
  printf("new_dlopen_main: smpalloc %s\n", smp_version());
  if (!test_frontend_check("new_dlopen_main", stdout)) return 1;
  void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!plugin) {
    fprintf(stderr, "new_dlopen_main: %s\n", dlerror());
    return 1;
  }
  int (*check)(void) = (int (*)(void))dlsym(plugin, "plugin_check_new");
  if (!check) {
    fprintf(stderr, "new_dlopen_main: %s\n", dlerror());
    return 1;
  }
  int failed = check();
  if (failed) fprintf(stderr, "new_dlopen_main: check %d failed\n", failed);
  else printf("new_dlopen_main: new handler ran and std::bad_alloc was thrown in a dlopened plugin\n");
  return failed ? 1 : 0;
}
