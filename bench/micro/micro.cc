// Micro-benchmarks of the malloc family (Google Benchmark). Like bench/workloads, this program
// calls plain malloc/free and is never linked to smpalloc: bench/micro.py runs the one binary
// under each allocator with LD_PRELOAD, so every allocator is measured by the same code.
// Each benchmark reports items_per_second, an item being one allocation with its free (one
// realloc for the realloc ones); cross-thread frees are timed in real time, the rest in CPU time.
// Every block is touched (one byte per page and the last byte), so an allocator that returns
// memory to the system pays its page faults here, and content is checked where an allocator
// could get it wrong (calloc zeroes, realloc keeps, alignment holds): a wrong answer stops that
// benchmark with an error, which micro.py reports, rather than a number.
// DoNotOptimize on each pointer makes it escape, so no compiler may elide a malloc/free pair.
// The default minimum time is 0.1 s per benchmark (not Google Benchmark's 0.5 s), so a whole run
// stays well under 20 s; an explicit --benchmark_min_time wins.
// smpalloc's own API (heaps, smp_mallocx: include/smpalloc.h) is measured too, when the preloaded
// allocator has it: those benchmarks are registered at start-up only when dlsym finds the smp_
// functions, so under any other allocator they are simply absent (heap_pair, mallocx_pair,
// heap_destroy, heap_destroy_rss, typed_pair; see "smpalloc's API" below).
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <unistd.h>

#include "smpalloc.h" // types and flags only: the functions are found with dlsym

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPage = 4096;

// Writes one byte in every page of the block and its last byte, so each page is resident.
inline void touch(void *p, size_t n, unsigned char v) {
  auto *c = static_cast<unsigned char *>(p);
  for (size_t i = 0; i < n; i += kPage) c[i] = v;
  c[n - 1] = v;
}

// True when the bytes touch() would write are zero: the calloc check.
inline bool touched_zero(const void *p, size_t n) {
  const auto *c = static_cast<const unsigned char *>(p);
  for (size_t i = 0; i < n; i += kPage)
    if (c[i]) return false;
  return c[n - 1] == 0;
}

// The loop of malloc_free, aligned_alloc_free and posix_memalign_free: get() returns a block of
// n bytes, touched and then freed. A block that is NULL or not aligned to align stops the
// benchmark with that error. Always inlined, so malloc_free's loop (align 1) has no test.
template <class Get>
[[gnu::always_inline]] inline void get_touch_free(benchmark::State &state, size_t n, size_t align,
                                                  Get get, const char *null_error,
                                                  const char *misaligned_error) {
  for (auto _ : state) {
    void *p = get();
    if (!p || reinterpret_cast<uintptr_t>(p) % align) {
      state.SkipWithError(p ? misaligned_error : null_error);
      std::free(p);
      break;
    }
    benchmark::DoNotOptimize(p);
    touch(p, n, 1);
    benchmark::ClobberMemory();
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// One malloc and its free, with the block touched in between.
void malloc_free(benchmark::State &state) {
  const size_t n = static_cast<size_t>(state.range(0));
  get_touch_free(state, n, 1, [n] { return std::malloc(n); }, "malloc returned NULL", nullptr);
}
BENCHMARK(malloc_free)
    ->Arg(16)->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)
    ->Arg(4096)->Arg(16384)->Arg(65536)->Arg(262144);

// Allocate 1000 blocks, then free them in allocation order: the caches fill and drain.
void batch_1000(benchmark::State &state) {
  constexpr size_t kBatch = 1000;
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<void *> blocks(kBatch); // allocated before timing starts
  for (auto _ : state) {
    for (size_t i = 0; i < kBatch; i++) {
      void *p = std::malloc(n);
      if (!p) {
        state.SkipWithError("malloc returned NULL");
        return;
      }
      benchmark::DoNotOptimize(p);
      touch(p, n, 1);
      blocks[i] = p;
    }
    benchmark::ClobberMemory();
    for (size_t i = 0; i < kBatch; i++) std::free(blocks[i]);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(batch_1000)->Arg(16)->Arg(128)->Arg(1024)->Arg(16384);

// calloc and free: the zeroing is checked, then the block is dirtied so the next one must be
// cleared again (unless the allocator knows it came fresh from the system).
void calloc_free(benchmark::State &state) {
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void *p = std::calloc(1, n);
    if (!p) {
      state.SkipWithError("calloc returned NULL");
      break;
    }
    benchmark::DoNotOptimize(p);
    if (!touched_zero(p, n)) {
      state.SkipWithError("calloc returned memory that is not zero");
      std::free(p);
      break;
    }
    touch(p, n, 0xa5);
    benchmark::ClobberMemory();
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(calloc_free)->Arg(16)->Arg(256)->Arg(4096)->Arg(65536);

// Grows one block from 16 bytes to 64 KiB, by steps of `step` bytes, or doubling when `step`
// is 0; one item is one realloc. The first byte and the old last byte must survive.
void realloc_steps(benchmark::State &state, size_t step) {
  constexpr size_t kStart = 16, kEnd = 64 * 1024;
  size_t steps = 0;
  for (auto _ : state) {
    auto *p = static_cast<unsigned char *>(std::malloc(kStart));
    if (!p) {
      state.SkipWithError("malloc returned NULL");
      break;
    }
    p[0] = 0x5a;
    p[kStart - 1] = 0x3c;
    for (size_t n = kStart; n < kEnd;) {
      size_t next = step ? n + step : 2 * n;
      auto *q = static_cast<unsigned char *>(std::realloc(p, next));
      if (!q) {
        state.SkipWithError("realloc returned NULL");
        std::free(p);
        return;
      }
      benchmark::DoNotOptimize(q);
      if (q[0] != 0x5a || q[n - 1] != 0x3c) {
        state.SkipWithError("realloc lost the block's content");
        std::free(q);
        return;
      }
      q[n - 1] = 0;
      q[next - 1] = 0x3c;
      p = q;
      n = next;
      steps++;
    }
    benchmark::ClobberMemory();
    std::free(p);
  }
  state.SetItemsProcessed(static_cast<int64_t>(steps));
}

// realloc growth by range(0) bytes a step.
void realloc_grow(benchmark::State &state) {
  realloc_steps(state, static_cast<size_t>(state.range(0)));
}
BENCHMARK(realloc_grow)->Arg(16)->Arg(256);

// realloc growth doubling the size each step.
void realloc_double(benchmark::State &state) { realloc_steps(state, 0); }
BENCHMARK(realloc_double);

// aligned_alloc(range(0), range(1)) and free; the alignment is checked.
void aligned_alloc_free(benchmark::State &state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  get_touch_free(state, n, align, [=] { return std::aligned_alloc(align, n); },
                 "aligned_alloc returned NULL", "aligned_alloc returned a misaligned block");
}
BENCHMARK(aligned_alloc_free)->Args({64, 64})->Args({64, 1024})->Args({4096, 4096})
    ->Args({4096, 16384});

// posix_memalign(range(0), range(1)) and free; the alignment is checked.
void posix_memalign_free(benchmark::State &state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  auto get = [=]() -> void * {
    void *p = nullptr;
    return posix_memalign(&p, align, n) == 0 ? p : nullptr;
  };
  get_touch_free(state, n, align, get, "posix_memalign failed",
                 "posix_memalign returned a misaligned block");
}
BENCHMARK(posix_memalign_free)->Args({64, 64})->Args({64, 1024})->Args({4096, 4096})
    ->Args({4096, 16384});

// Bounded single-producer/single-consumer ring of blocks. Each index is written by one side
// only; release on the write publishes the slot, acquire on the other side's read sees it.
struct Ring {
  static constexpr size_t kSize = 1024; // a power of two
  alignas(64) std::atomic<size_t> head{0}; // consumer only
  alignas(64) std::atomic<size_t> tail{0}; // producer only
  alignas(64) std::atomic<size_t> freed{0}; // consumer only: blocks freed so far
  alignas(64) std::atomic<bool> stop{false}; // producer only, after its last block
  void *slot[kSize];
};

// Waits politely: the machine may have fewer free cores than there are threads.
inline void backoff(unsigned &spins) {
  if (++spins < 64) return;
  spins = 0;
  std::this_thread::yield();
}

// Consumer side: frees every block it receives, after checking the tag the producer wrote.
void consume(Ring *r, std::atomic<bool> *bad) {
  size_t head = r->head.load(std::memory_order_relaxed);
  unsigned spins = 0;
  for (;;) {
    if (head == r->tail.load(std::memory_order_acquire)) {
      if (r->stop.load(std::memory_order_acquire) &&
          head == r->tail.load(std::memory_order_acquire))
        return;
      backoff(spins);
      continue;
    }
    auto *p = static_cast<unsigned char *>(r->slot[head % Ring::kSize]);
    if (p[0] != static_cast<unsigned char>(head)) bad->store(true, std::memory_order_relaxed);
    std::free(p);
    head++;
    r->head.store(head, std::memory_order_release);
    r->freed.store(head, std::memory_order_release);
  }
}

// One thread allocates blocks of range(0) bytes into the ring; a second thread, started before
// timing, frees them: every free is remote. One iteration is 4096 blocks, and it ends only
// when the consumer has freed all of them, so the time counts both sides.
void cross_thread_free(benchmark::State &state) {
  constexpr size_t kPerIteration = 4096;
  const size_t n = static_cast<size_t>(state.range(0));
  Ring *r = new Ring;
  std::atomic<bool> bad{false};
  std::thread consumer(consume, r, &bad);
  size_t tail = 0;
  for (auto _ : state) {
    const size_t end = tail + kPerIteration;
    unsigned spins = 0;
    for (; tail < end; tail++) {
      auto *p = static_cast<unsigned char *>(std::malloc(n));
      if (!p) {
        state.SkipWithError("malloc returned NULL");
        break;
      }
      benchmark::DoNotOptimize(p);
      touch(p, n, 1);
      p[0] = static_cast<unsigned char>(tail);
      while (tail - r->head.load(std::memory_order_acquire) == Ring::kSize) backoff(spins);
      r->slot[tail % Ring::kSize] = p;
      r->tail.store(tail + 1, std::memory_order_release);
    }
    if (tail != end) break;
    while (r->freed.load(std::memory_order_acquire) != end) backoff(spins);
  }
  r->stop.store(true, std::memory_order_release);
  consumer.join();
  delete r;
  if (bad.load()) state.SkipWithError("a block changed between its malloc and its remote free");
  state.SetItemsProcessed(static_cast<int64_t>(tail));
}
BENCHMARK(cross_thread_free)->Arg(16)->Arg(256)->Arg(4096)->UseRealTime();

// ---- smpalloc's API ---------------------------------------------------------------------
// Found with dlsym at start-up (this program is never linked to smpalloc); all null when the
// preloaded allocator is not smpalloc, and then none of these benchmarks is registered.
struct SmpApi {
  decltype(&smp_heap_create) heap_create = nullptr;
  decltype(&smp_heap_malloc) heap_malloc = nullptr;
  decltype(&smp_heap_destroy) heap_destroy = nullptr;
  decltype(&smp_mallocx) mallocx = nullptr;
  decltype(&smp_malloc_type) malloc_type = nullptr; // absent from builds before malloc types
  decltype(&smp_free_type) free_type = nullptr;
  bool found() const { return heap_create && heap_malloc && heap_destroy && mallocx; }
};
SmpApi smp;

template <class F> void find(F &fn, const char *name) {
  fn = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

// smp_heap_malloc(h, n, 0) and free, in a heap made for the benchmark: the heap's own hit path
// (flags 0) next to malloc_free's.
void heap_pair(benchmark::State &state) {
  const size_t n = static_cast<size_t>(state.range(0));
  smp_heap_t *h = smp.heap_create("micro", 0);
  if (!h) {
    state.SkipWithError("smp_heap_create failed");
    return;
  }
  get_touch_free(state, n, 1, [h, n] { return smp.heap_malloc(h, n, 0); },
                 "smp_heap_malloc returned NULL", nullptr);
  smp.heap_destroy(h);
}

// smp_mallocx(n, 0) and free: the default heap through the flags entry (with flags 0 it is
// malloc's hit path, says the header).
void mallocx_pair(benchmark::State &state) {
  const size_t n = static_cast<size_t>(state.range(0));
  get_touch_free(state, n, 1, [n] { return smp.mallocx(n, 0); }, "smp_mallocx returned NULL",
                 nullptr);
}

// A malloc type of the benchmark's own, defined by hand: SMP_TYPE_DEFINE would also write a
// destructor calling smp_type_unregister, which this program (never linked to smpalloc) lacks.
smp_type_t bench_type[1] = {{SMP_TYPE_MAGIC, 0, "bench", "micro-benchmark blocks", nullptr, 0, 0}};

// smp_malloc_type(n, type, 0) and smp_free_type: the typed hit paths, next to mallocx_pair's
// (the budget: at most 1.5x the plain pair, and scaling like it across threads).
void typed_pair(benchmark::State &state) {
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void *p = smp.malloc_type(n, bench_type, 0);
    if (!p) {
      state.SkipWithError("smp_malloc_type returned NULL");
      break;
    }
    benchmark::DoNotOptimize(p);
    touch(p, n, 1);
    benchmark::ClobberMemory();
    smp.free_type(p, bench_type);
  }
  state.SetItemsProcessed(state.iterations());
}

// Resident set size in bytes, from /proc/self/statm (its second field, in pages).
size_t rss_bytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

constexpr double kMiB = 1024.0 * 1024.0;

// Fill a new heap with about `bytes` in blocks of 64 B .. 1 KiB (log-uniform: a fixed
// xorshift sequence, so every run makes the same blocks), each block's first and last bytes
// written (so every page is resident); returns the heap, or null after SkipWithError.
smp_heap_t *fill_heap(benchmark::State &state, size_t bytes, size_t *blocks) {
  smp_heap_t *h = smp.heap_create("micro-destroy", 0);
  if (!h) {
    state.SkipWithError("smp_heap_create failed");
    return nullptr;
  }
  uint64_t x = 0x9e3779b97f4a7c15ull;
  size_t total = 0, count = 0;
  while (total < bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const unsigned shift = 6 + static_cast<unsigned>(x % 4); // 64 .. 512, then up to 2x
    const size_t n = (size_t{1} << shift) + static_cast<size_t>((x >> 8) % (size_t{1} << shift));
    auto *p = static_cast<unsigned char *>(smp.heap_malloc(h, std::min<size_t>(n, 1024), 0));
    if (!p) {
      state.SkipWithError("smp_heap_malloc returned NULL while filling the heap");
      smp.heap_destroy(h);
      return nullptr;
    }
    const size_t m = std::min<size_t>(n, 1024);
    p[0] = 1;
    p[m - 1] = 1;
    total += m;
    count++;
  }
  *blocks = count;
  return h;
}

// range(0) MiB in blocks of 64 B .. 1 KiB allocated from a heap (not timed), then
// smp_heap_destroy alone timed (manual time). Counters: ms_per_100MiB (destroy time per
// 100 MiB of blocks, the mean over iterations), blocks (per heap). One item is one block freed
// by the destroy.
void heap_destroy(benchmark::State &state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  double seconds = 0;
  size_t blocks = 0, items = 0;
  for (auto _ : state) {
    smp_heap_t *h = fill_heap(state, bytes, &blocks);
    if (!h) return;
    const auto t0 = std::chrono::steady_clock::now();
    smp.heap_destroy(h);
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(s);
    seconds += s;
    items += blocks;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["ms_per_100MiB"] = iters ? seconds * 1e3 / iters / (bytes / (100 * kMiB)) : 0;
  state.counters["blocks"] = static_cast<double>(blocks);
  state.SetItemsProcessed(static_cast<int64_t>(items));
}

// The same heap filled, then the resident set size (/proc/self/statm) before smp_heap_destroy
// and after it: the destroy must give the heap's pages back. When a background thread runs, the
// pages go back in its pass, which the destroy starts: the RSS is read again every millisecond
// until it falls, for up to 2 s (counter wait_ms). Counters in MiB: rss_before, rss_after,
// released (before - after), filled (the blocks' bytes). Not a timing: no items.
void heap_destroy_rss(benchmark::State &state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  size_t before = 0, after = 0, blocks = 0;
  unsigned wait_ms = 0;
  for (auto _ : state) {
    state.PauseTiming();
    smp_heap_t *h = fill_heap(state, bytes, &blocks);
    if (!h) return;
    before = rss_bytes();
    state.ResumeTiming();
    smp.heap_destroy(h);
    state.PauseTiming();
    after = rss_bytes();
    for (wait_ms = 0; wait_ms < 2000 && after > before - bytes / 2; wait_ms++) {
      usleep(1000);
      after = rss_bytes();
    }
    state.ResumeTiming();
  }
  state.counters["wait_ms"] = static_cast<double>(wait_ms);
  state.counters["rss_before_MiB"] = before / kMiB;
  state.counters["rss_after_MiB"] = after / kMiB;
  state.counters["released_MiB"] = (static_cast<double>(before) - static_cast<double>(after)) / kMiB;
  state.counters["filled_MiB"] = bytes / kMiB;
  if (before && after > before - bytes / 2)
    state.SkipWithError("smp_heap_destroy gave back less than half of the heap's blocks' bytes");
}

// Registered only when the preloaded allocator is smpalloc.
void register_smp_benchmarks() {
  find(smp.heap_create, "smp_heap_create");
  find(smp.heap_malloc, "smp_heap_malloc");
  find(smp.heap_destroy, "smp_heap_destroy");
  find(smp.mallocx, "smp_mallocx");
  if (!smp.found()) return;
  benchmark::RegisterBenchmark("heap_pair", heap_pair)->Arg(16)->Arg(256)->Arg(4096);
  benchmark::RegisterBenchmark("mallocx_pair", mallocx_pair)->Arg(16)->Arg(64)->Arg(256)->Arg(4096)
      ->Threads(1)->Threads(2);
  find(smp.malloc_type, "smp_malloc_type");
  find(smp.free_type, "smp_free_type");
  if (smp.malloc_type && smp.free_type)
    // 48 and 240: the block classes of mallocx_pair/64 and /256 (a typed block is 16 larger).
    benchmark::RegisterBenchmark("typed_pair", typed_pair)->Arg(16)->Arg(48)->Arg(240)->Arg(256)
        ->Arg(4096)->Threads(1)->Threads(2);
  // 1 GiB a heap: three iterations (each fills the heap anew, ~1 s untimed).
  benchmark::RegisterBenchmark("heap_destroy", heap_destroy)
      ->Arg(1024)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("heap_destroy_rss", heap_destroy_rss)
      ->Arg(1024)->Iterations(1)->Unit(benchmark::kMillisecond);
}

// True when argv already sets the minimum time.
bool has_min_time(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (std::strncmp(argv[i], "--benchmark_min_time", 20) == 0) return true;
  return false;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<char *> args(argv, argv + argc);
  std::string min_time = "--benchmark_min_time=0.1";
  if (!has_min_time(argc, argv)) args.insert(args.begin() + 1, min_time.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  register_smp_benchmarks(); // before Initialize, so --benchmark_filter and --benchmark_list_tests see them
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
#if defined(__clang__)
  benchmark::AddCustomContext("compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
  benchmark::AddCustomContext("compiler", "gcc " __VERSION__);
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
