// Layer: platform (Linux). See rseq.h. Nothing here allocates: the CPU count comes from raw
// system calls and /sys read with open/read, the environment through smp_os_getenv.
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os.h"
#include "rseq.h"

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif

ptrdiff_t smp_rseq_cs_offset;
ptrdiff_t smp_rseq_index_offset;

// Our own area, used only where glibc registered none. Its index fields start at -1, which the
// cache layer maps to a region where every operation misses, until the thread registers.
static __thread smp_rseq_area_t own_area SMP_TLS_IE = {
    .cpu_id = (uint32_t)-1, .mm_cid = (uint32_t)-1};
static bool own_mode;

static char *thread_pointer(void) { return (char *)__builtin_thread_pointer(); }

static int register_own(void) {
  int saved = errno; // a new thread registers on a malloc miss: keep the caller's errno
  if (syscall(SYS_rseq, &own_area, sizeof own_area, 0, RSEQ_SIG) == 0) return 0;
  int e = errno;
  errno = saved;
  own_area.cpu_id = (uint32_t)-2;
  own_area.mm_cid = (uint32_t)-2;
  return e;
}

bool smp_rseq_register_thread(void) {
  if (!own_mode) return true;
  if ((int32_t)own_area.cpu_id >= 0) return true;
  if (own_area.cpu_id == (uint32_t)-2) return false;
  return register_own() == 0;
}

// Highest possible CPU number + 1, from /sys (text like "0-127" or "0,2-5").
static unsigned possible_cpus(void) {
  unsigned max = 0;
  int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned v = 0;
    bool digits = false;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        v = v * 10 + (unsigned)(buf[i] - '0');
        digits = true;
      } else {
        if (digits && v + 1 > max) max = v + 1;
        v = 0;
        digits = false;
      }
    }
    if (digits && v + 1 > max) max = v + 1;
  }
  // The kernel's cpumask size bounds every CPU number (nr_cpu_ids <= 8 * bytes); trust it
  // over /sys, which a container may show smaller than the real CPU numbers.
  unsigned long mask[128];
  long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  if (bytes > 0 && (unsigned)bytes * 8 > max) max = (unsigned)bytes * 8;
  return max ? max : 1;
}

static bool tunables_disable_rseq(void) {
  const char *t = smp_os_getenv("GLIBC_TUNABLES");
  return t && strstr(t, "glibc.pthread.rseq=0") != NULL;
}

void smp_rseq_init(smp_rseq_info_t *out) {
  memset(out, 0, sizeof *out);
  ptrdiff_t area;
  if (__rseq_size > 0) {
    area = __rseq_offset;
    const smp_rseq_area_t *a = (const smp_rseq_area_t *)(thread_pointer() + area);
    if ((int32_t)a->cpu_id < 0) {
      out->reason = "glibc's rseq registration failed";
      return;
    }
  } else if (tunables_disable_rseq()) {
    out->reason = "rseq disabled by GLIBC_TUNABLES";
    return;
  } else {
    int e = register_own();
    if (e != 0) {
      out->reason = e == ENOSYS ? "no rseq system call (old kernel or valgrind)"
                                : "rseq registration refused (seccomp?)";
      return;
    }
    area = (char *)&own_area - thread_pointer();
  }
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) {
    out->reason = "membarrier rseq fence unavailable";
    return;
  }
  own_mode = __rseq_size == 0; // we registered the areas: new threads register on a miss
  out->indexes = possible_cpus();
  // mm_cid: Linux 6.3+ announces it with AT_RSEQ_FEATURE_SIZE >= 28 and fills it in any
  // registration of the original 32 bytes. glibc 2.36 registers 32 bytes but publishes
  // __rseq_size = 20 (the fields it knew), so the field is read past __rseq_size: accept it only
  // if this thread's value is a plausible id (below the number of possible CPUs).
  const smp_rseq_area_t *me = (const smp_rseq_area_t *)(thread_pointer() + area);
  out->mm_cid = getauxval(AT_RSEQ_FEATURE_SIZE) >= 28 && me->mm_cid < out->indexes;
  smp_rseq_cs_offset = area + (ptrdiff_t)offsetof(smp_rseq_area_t, rseq_cs);
  smp_rseq_index_offset = area + (ptrdiff_t)(out->mm_cid ? offsetof(smp_rseq_area_t, mm_cid)
                                                         : offsetof(smp_rseq_area_t, cpu_id));
  out->usable = true;
}

bool smp_rseq_fence(void) {
  int saved = errno; // called from malloc's slow path (idle drain): a refusal is not the caller's
  bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
  errno = saved;
  return ok;
}
