// A C++ plugin for new_dlopen_main.c: loaded with dlopen(RTLD_LOCAL) into a C program that
// links smpalloc, so libstdc++ arrives after smpalloc was loaded and is not in the global
// scope. Its operator new calls are smpalloc's; when they fail they must still run the new
// handler and throw std::bad_alloc (and the nothrow form return null), as the standard asks.
#include <climits>
#include <cstdint>
#include <new>

namespace {
int handler_calls;
void give_up() {
  handler_calls++;
  std::set_new_handler(nullptr); // the next failure throws
}
} // namespace

// 0 when every check passed, else the number of the first that failed.
extern "C" __attribute__((visibility("default"))) int plugin_check_new(void) {
  int *small = new int(7); // plain success first
  if (*small != 7) return 1;
  delete small;
  std::set_new_handler(give_up);
  bool threw = false;
  try {
    void *p = ::operator new(SIZE_MAX / 2);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  if (!threw) return 2;
  if (handler_calls != 1) return 3;
  std::set_new_handler(give_up);
  if (::operator new(SIZE_MAX / 2, std::nothrow) != nullptr) return 4;
  if (handler_calls != 2) return 5;
  return 0;
}
