// Conformance of the C++ allocation operators of libsmpalloc.so: every form of new/delete is
// served from the smpalloc heap (smp_usable_size, which aborts on foreign pointers, accepts
// the blocks), alignment is honoured, failure throws std::bad_alloc after the new handler had
// its say, and the nothrow forms return nullptr. The front end is the one SMPALLOC_OPTIONS asks
// for (tests/test_frontend.h).
#include "test_frontend.h"

#include <criterion/criterion.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "smpalloc.h"

namespace {

template <typename T> T *opaque(T *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}
std::size_t hide(std::size_t n) {
  __asm__ volatile("" : "+r"(n));
  return n;
}
bool aligned(const void *p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }

struct alignas(256) Wide {
  char bytes[300];
};

int handler_calls;
void counting_handler() {
  handler_calls++;
  std::set_new_handler(nullptr); // give up: the next failure throws
}

} // namespace

Test(new_delete, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_new", stderr), "see the FAIL line above");
}

Test(new_delete, plain_and_array) {
  int *i = opaque(new int(42));
  cr_assert_eq(*i, 42);
  cr_assert_geq(smp_usable_size(i), sizeof(int));
  cr_assert(aligned(i, 16));
  delete i;
  long *a = opaque(new long[1000]);
  cr_assert_geq(smp_usable_size(a), 1000 * sizeof(long));
  for (int k = 0; k < 1000; k++) a[k] = k;
  cr_assert_eq(a[999], 999);
  delete[] a;
  char *z = opaque(new char[0]);
  cr_assert_not_null(z);
  delete[] z;
}

Test(new_delete, nothrow_forms) {
  int *i = opaque(new (std::nothrow) int(7));
  cr_assert_not_null(i);
  cr_assert_geq(smp_usable_size(i), sizeof(int));
  delete i;
  char *a = opaque(new (std::nothrow) char[100000]);
  cr_assert_not_null(a);
  std::memset(a, 1, 100000);
  cr_assert_geq(smp_usable_size(a), 100000);
  delete[] a;
  void *p = ::operator new(64, std::nothrow);
  cr_assert_not_null(p);
  ::operator delete(p, std::nothrow);
  p = ::operator new[](64, std::nothrow);
  cr_assert_not_null(p);
  ::operator delete[](p, std::nothrow);
}

Test(new_delete, sized_delete) {
  const std::size_t sizes[] = {1, 16, 100, 5000, 65536, 200 * 1024, 3 << 20};
  for (std::size_t n : sizes) {
    void *p = ::operator new(n);
    cr_assert_geq(smp_usable_size(p), n);
    std::memset(p, 2, n);
    ::operator delete(p, n);
    p = ::operator new[](n);
    std::memset(p, 3, n);
    ::operator delete[](p, n);
  }
}

Test(new_delete, over_aligned_type) {
  Wide *w = opaque(new Wide);
  cr_assert(aligned(w, 256), "new Wide = %p", static_cast<void *>(w));
  cr_assert_geq(smp_usable_size(w), sizeof(Wide));
  std::memset(w->bytes, 4, sizeof w->bytes);
  delete w;
  Wide *arr = opaque(new Wide[10]);
  cr_assert(aligned(arr, 256));
  std::memset(static_cast<void *>(arr), 5, 10 * sizeof(Wide));
  delete[] arr;
  Wide *nt = opaque(new (std::nothrow) Wide);
  cr_assert(nt != nullptr && aligned(nt, 256));
  delete nt;
}

Test(new_delete, explicit_align_val_t) {
  const std::size_t aligns[] = {32, 256, 4096, 65536, 1 << 21};
  const std::size_t sizes[] = {1, 1000, 100000, 3 << 20};
  for (std::size_t a : aligns)
    for (std::size_t n : sizes) {
      std::align_val_t al{a};
      void *p = ::operator new(n, al);
      cr_assert(aligned(p, a), "operator new(%zu, align %zu) = %p", n, a, p);
      cr_assert_geq(smp_usable_size(p), n);
      std::memset(p, 6, n);
      ::operator delete(p, al);
      p = ::operator new[](n, al);
      cr_assert(aligned(p, a));
      std::memset(p, 7, n);
      ::operator delete[](p, n, al);
      p = ::operator new(n, al, std::nothrow);
      cr_assert(p != nullptr && aligned(p, a));
      ::operator delete(p, n, al);
      p = ::operator new[](n, al, std::nothrow);
      cr_assert(p != nullptr && aligned(p, a));
      ::operator delete[](p, al, std::nothrow);
    }
  void *p = ::operator new(100, std::align_val_t(4096));
  cr_assert(aligned(p, 4096));
  ::operator delete(p, std::align_val_t(4096), std::nothrow);
}

Test(new_delete, failure_throws_bad_alloc) {
  std::set_new_handler(nullptr);
  bool threw = false;
  try {
    void *p = ::operator new(hide(SIZE_MAX / 2));
    opaque(p);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  cr_assert(threw, "operator new(SIZE_MAX / 2) did not throw std::bad_alloc");
  threw = false;
  try {
    void *p = ::operator new[](hide(SIZE_MAX / 2), std::align_val_t(64));
    opaque(p);
    ::operator delete[](p, std::align_val_t(64));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  cr_assert(threw, "aligned operator new[](SIZE_MAX / 2) did not throw std::bad_alloc");
}

Test(new_delete, nothrow_failure_returns_null) {
  std::set_new_handler(nullptr);
  cr_assert_null(::operator new(hide(SIZE_MAX / 2), std::nothrow));
  cr_assert_null(::operator new[](hide(SIZE_MAX / 2), std::nothrow));
  cr_assert_null(::operator new(hide(SIZE_MAX / 2), std::align_val_t(4096), std::nothrow));
  cr_assert_null(::operator new[](hide(SIZE_MAX), std::align_val_t(64), std::nothrow));
}

Test(new_delete, new_handler_called_before_bad_alloc) {
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  bool threw = false;
  try {
    opaque(::operator new(hide(SIZE_MAX / 2)));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  cr_assert(threw, "no std::bad_alloc");
  cr_assert_eq(handler_calls, 1, "the new handler ran %d times, want 1", handler_calls);
  cr_assert_null(std::get_new_handler(), "the handler did not uninstall itself");

  // The nothrow form consults the handler too, then returns nullptr.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  cr_assert_null(::operator new(hide(SIZE_MAX / 2), std::nothrow));
  cr_assert_eq(handler_calls, 1, "nothrow new: handler ran %d times, want 1", handler_calls);

  // And the aligned form.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  threw = false;
  try {
    opaque(::operator new(hide(SIZE_MAX / 2), std::align_val_t(256)));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  cr_assert(threw && handler_calls == 1, "aligned new: threw %d, handler ran %d times", threw,
            handler_calls);
}

Test(new_delete, containers_with_100k_elements, .timeout = 30) {
  const int n = 100000;
  std::vector<std::string> v;
  for (int i = 0; i < n; i++) v.push_back("element number " + std::to_string(i) + " of the vector");
  cr_assert_eq(v.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; i += 997)
    cr_assert_eq(v[i], "element number " + std::to_string(i) + " of the vector");
  cr_assert_geq(smp_usable_size(v.data()), n * sizeof(std::string));

  std::map<int, std::string> m;
  std::vector<int> want_len(n);
  for (int i = 0; i < n; i++) { // 7 and n are coprime: every key once
    m.emplace(i * 7 % n, std::string(static_cast<std::size_t>(i % 50), 'x'));
    want_len[i * 7 % n] = i % 50;
  }
  cr_assert_eq(m.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; i += 2) m.erase(i);
  cr_assert_eq(m.size(), static_cast<std::size_t>(n / 2));
  int bad = 0;
  for (const auto &kv : m)
    bad += kv.first % 2 != 1 || kv.second.size() != static_cast<std::size_t>(want_len[kv.first]);
  cr_assert_eq(bad, 0, "%d map entries are wrong", bad);
  std::vector<std::string> copy(v.begin(), v.end());
  v.clear();
  v.shrink_to_fit();
  cr_assert_eq(copy[n - 1], "element number " + std::to_string(n - 1) + " of the vector");
}
