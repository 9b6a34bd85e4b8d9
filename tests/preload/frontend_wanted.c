// Prints the front end SMPALLOC_OPTIONS (from the environment) asks for: "thread", "percpu" or
// "either", by tests/test_frontend.h's rule. run_preload.sh checks it against the front end the
// statistics report of each preloaded process names, since the real programs it runs cannot
// check themselves. Not linked with smpalloc (it runs nothing of the library's).
#include "test_frontend.h"

int main(void) {
  puts(test_frontend_word(test_frontend_wanted(getenv("SMPALLOC_OPTIONS"))));
  return 0;
}
