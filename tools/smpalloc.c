/* smpalloc: the command shipped in smpalloc-tools.
 *
 *   smpalloc run [--stats] [--option NAME:VALUE]... [--library PATH] [--] PROG [ARGS...]
 *   smpalloc compare [compare.sh options] [--library PATH] -- PROG [ARGS...]
 *   smpalloc version
 *   smpalloc help [COMMAND]
 *
 * run starts PROG with the replacing library (libsmpalloc.so) prepended to LD_PRELOAD and each
 * --option appended to SMPALLOC_OPTIONS, after checking the options with the library's own parser. It
 * then checks that PROG really loaded the library: the library's constructor creates the file
 * named by SMPALLOC_LOADED_MARK (lib/api/override.c), which run points into a directory of its
 * own (mkdtemp); a static or set-user-ID program never creates it, and run then says so and
 * exits 3. (The check is per process: a dynamic PROG that drops LD_PRELOAD before it execs
 * another program has loaded the library itself, so it passes.) Otherwise it exits as PROG did (128+N when signal N
 * killed it). While it waits it ignores SIGINT and SIGQUIT, as system() does (the terminal
 * sends them to PROG too), and passes SIGTERM and SIGHUP on to PROG.
 *
 * compare execs bench/compare.sh, installed in SMP_BENCH_DIR (share/smpalloc/bench; the
 * environment's SMPALLOC_BENCH_DIR overrides it, e.g. the source tree's bench/ for the tests),
 * with the library in SMPALLOC_LIBRARY: the installed script then builds nothing.
 *
 * The library: --library PATH, else the environment's SMPALLOC_LIBRARY, else SMP_DEFAULT_LIBRARY
 * (the installed libdir's libsmpalloc.so.0), both set by tools/CMakeLists.txt.
 *
 * The options are checked by the library's parser itself (lib/support/options.c, compiled into
 * the command: smp_options_valid is what smp_options_check calls), so the command has no copy of
 * the option table; it does not link the allocator, which would start in this process, read
 * the caller's SMPALLOC_OPTIONS and, say, print a statistics report of its own at exit.
 * Exit statuses of its own: 0 for help and version,
 * 2 for a usage error (unknown command or option, bad --option, missing library), 3 when PROG
 * did not load the library, 126/127 when PROG cannot be run (as a shell), 1 for a system error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"  // SMP_VERSION_STRING
#include "options.h" // smp_options_valid

#ifndef SMP_DEFAULT_LIBRARY
#error "SMP_DEFAULT_LIBRARY (the installed libsmpalloc.so.0) is defined by tools/CMakeLists.txt"
#endif
#if !defined SMP_LIBRARY_FROM_BINDIR || !defined SMP_BENCH_FROM_BINDIR
#error "SMP_LIBRARY_FROM_BINDIR and SMP_BENCH_FROM_BINDIR are defined by tools/CMakeLists.txt"
#endif
#ifndef SMP_BENCH_DIR
#error "SMP_BENCH_DIR (the installed compare scripts) is defined by tools/CMakeLists.txt"
#endif

enum { EXIT_USAGE = 2, EXIT_NOT_LOADED = 3, EXIT_NOEXEC = 126, EXIT_NOTFOUND = 127 };

static const char usage_main[] =
    "Usage: smpalloc COMMAND [ARGS...]\n"
    "Run programs on the smpalloc memory allocator.\n"
    "\n"
    "Commands:\n"
    "  run      run a program with libsmpalloc.so preloaded\n"
    "  compare  run a program under smpalloc and other allocators and compare time and memory\n"
    "  version  print smpalloc's version (this command's build)\n"
    "  help     print this help, or a command's (smpalloc help COMMAND)\n"
    "\n"
    "smpalloc COMMAND --help prints the command's usage; smpalloc --version is smpalloc version.\n";

static const char usage_run[] =
    "Usage: smpalloc run [--stats] [--option NAME:VALUE]... [--library PATH] [--] PROG [ARGS...]\n"
    "Run PROG with libsmpalloc.so prepended to LD_PRELOAD, and exit with its status (128+N when\n"
    "signal N killed it).\n"
    "\n"
    "  --stats               print the statistics report to stderr when PROG exits (stats:1)\n"
    "  -o, --option ITEMS    append ITEMS (NAME:VALUE[,NAME:VALUE...]) to SMPALLOC_OPTIONS,\n"
    "                        after checking them; repeatable\n"
    "  --library PATH        the library to preload (default: $SMPALLOC_LIBRARY, else\n"
    "                        " SMP_DEFAULT_LIBRARY ")\n"
    "  -h, --help            print this help\n"
    "\n"
    "Exits 3 if PROG did not load the library (a static or set-user-ID program), 2 on a usage\n"
    "error, 127 if PROG is not found, 126 if it cannot run.\n";

static const char usage_compare[] =
    "Usage: smpalloc compare [compare.sh options] [--library PATH] -- PROG [ARGS...]\n"
    "Run PROG under smpalloc and the other installed allocators (glibc, jemalloc, mimalloc,\n"
    "tcmalloc, tbb) and print a table of median time and peak RSS, with ratios to smpalloc.\n"
    "\n"
    "  --library PATH        smpalloc's library (default: $SMPALLOC_LIBRARY, else\n"
    "                        " SMP_DEFAULT_LIBRARY ")\n"
    "  -h, --help            print this help\n"
    "\n"
    "The other options are compare.sh's (in $SMPALLOC_BENCH_DIR, else " SMP_BENCH_DIR "):\n"
    "\n";

static const char usage_version[] =
    "Usage: smpalloc version\n"
    "Print smpalloc's version, the one this command was built with: smpalloc MAJOR.MINOR.PATCH.\n";

static const char usage_help[] = "Usage: smpalloc help [COMMAND]\n"
                                 "Print the usage of smpalloc, or of COMMAND.\n";

// The child run is waiting for, to which the SIGTERM and SIGHUP handler passes the signal on
// (0: none yet; the signals are blocked until it is set).
static volatile sig_atomic_t child_pid;

// Print "smpalloc[ CMD]: <message>" to stderr, without the newline.
static void vcomplain(const char *cmd, const char *fmt, va_list ap) {
  fprintf(stderr, "smpalloc%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
}

// Print "smpalloc[ CMD]: <message>" and a newline to stderr.
static void complain(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vcomplain(cmd, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

// A usage error of command cmd (NULL: of smpalloc itself): the message and a hint on stderr,
// exit status 2.
static int usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vcomplain(cmd, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'smpalloc %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
  return EXIT_USAGE;
}

// Memory or die: the command cannot go on without it.
static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    complain(NULL, "out of memory");
    exit(1);
  }
  return p;
}

// A new string: a, then sep and b (sep left out when a or b is empty or NULL).
static char *join(const char *a, const char *sep, const char *b) {
  a = a ? a : "";
  b = b ? b : "";
  if (*a == 0 || *b == 0) sep = "";
  size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
  char *s = xmalloc(n);
  snprintf(s, n, "%s%s%s", a, sep, b);
  return s;
}

// If arg is the option name (a word like "--library") with its value, or "name=value", put the
// value in *value and return true; *i moves past a value taken from the next word. A missing
// value is a usage error (exit 2).
static bool take_value(const char *cmd, const char *name, int argc, char **argv, int *i,
                       const char **value) {
  const char *arg = argv[*i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return false;
  if (arg[n] == '=' && name[1] == '-') { // --name=value (long options only)
    *value = arg + n + 1;
    return true;
  }
  if (arg[n] != 0) return false;
  if (*i + 1 >= argc) exit(usage_error(cmd, "option %s needs a value", name));
  *value = argv[++*i];
  return true;
}

// An installed file named relative to the command's own directory (SMP_*_FROM_BINDIR), so a tree
// installed elsewhere than its configured prefix (cmake --install --prefix DIR) still finds its
// library and scripts. NULL when there is no such file (the build tree, a moved command).
static char *beside_command(const char *relative) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return NULL;
  self[n] = 0;
  char *slash = strrchr(self, '/');
  if (slash == NULL) return NULL;
  *slash = 0;
  char *path = join(self, "/", relative);
  if (access(path, F_OK) == 0) return path;
  free(path);
  return NULL;
}

// The library to preload: explicit (--library), else $SMPALLOC_LIBRARY, else the installed
// one (beside the command, else at the configured prefix); made absolute (PROG may change directory before it runs another program). Exits 2 if it
// does not exist or cannot be named in LD_PRELOAD (whose separators are ':' and spaces).
static char *find_library(const char *cmd, const char *explicit_path) {
  const char *path = explicit_path;
  if (path == NULL || *path == 0) path = getenv("SMPALLOC_LIBRARY");
  if (path == NULL || *path == 0) path = beside_command(SMP_LIBRARY_FROM_BINDIR);
  if (path == NULL) path = SMP_DEFAULT_LIBRARY;
  if (strpbrk(path, ": \t\n") != NULL)
    exit(usage_error(cmd, "library path '%s' has a ':' or a space, which LD_PRELOAD cannot hold",
                     path));
  struct stat st;
  if (stat(path, &st) != 0) {
    complain(cmd, "library %s: %s", path, strerror(errno));
    exit(EXIT_USAGE);
  }
  if (!S_ISREG(st.st_mode)) {
    complain(cmd, "library %s: not a regular file", path);
    exit(EXIT_USAGE);
  }
  if (path[0] == '/') return join(path, "", "");
  char *cwd = getcwd(NULL, 0);
  if (cwd == NULL) {
    complain(cmd, "getcwd: %s", strerror(errno));
    exit(1);
  }
  char *abs = join(cwd, "/", path);
  free(cwd);
  return abs;
}

// Set environment variable name or die.
static void xsetenv(const char *name, const char *value) {
  if (setenv(name, value, 1) != 0) {
    complain(NULL, "setenv %s: %s", name, strerror(errno));
    exit(1);
  }
}

// PROG died of signal sig: end the same way where that leaves no core (a shell stops a loop on
// Ctrl-C only when its child died of SIGINT, not when it exited 130); otherwise, or if this
// process survives, exit status 128+sig, as a shell reports it.
static int exit_by_signal(int sig) {
  static const int quiet[] = {SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGALRM, SIGTERM, SIGUSR1, SIGUSR2};
  for (size_t k = 0; k < sizeof quiet / sizeof quiet[0]; k++) {
    if (quiet[k] != sig) continue;
    fflush(NULL);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
  }
  return 128 + sig;
}

// A forwarded signal (SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE) while run waits:
// passed on to PROG.
static void forward_signal(int sig) {
  pid_t pid = (pid_t)child_pid;
  if (pid > 0) kill(pid, sig);
}

// Remove run's private directory and the mark in it (which the library may have created).
static void remove_private_dir(const char *dir, const char *mark) {
  if (unlink(mark) != 0 && errno != ENOENT)
    complain("run", "cannot remove %s: %s", mark, strerror(errno));
  if (rmdir(dir) != 0) complain("run", "cannot remove %s: %s", dir, strerror(errno));
}

// smpalloc run: see the header. argv[0] is "run".
static int cmd_run(int argc, char **argv) {
  const char *library = NULL;
  char *options = join("", "", "");
  int i = 1;
  for (; i < argc; i++) {
    const char *arg = argv[i], *value;
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (arg[0] != '-' || arg[1] == 0) break; // PROG ("-" alone is a name, not an option)
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      fputs(usage_run, stdout);
      return 0;
    }
    if (strcmp(arg, "--stats") == 0) {
      value = "stats:1";
    } else if (take_value("run", "--option", argc, argv, &i, &value) ||
               take_value("run", "-o", argc, argv, &i, &value)) {
      char why[256] = "";
      if (!smp_options_valid(value, why, sizeof why)) {
        complain("run", "bad option '%s': %s", value, why[0] ? why : strerror(errno));
        return EXIT_USAGE;
      }
    } else if (take_value("run", "--library", argc, argv, &i, &value)) {
      library = value;
      continue;
    } else {
      return usage_error("run", "unknown option '%s'", arg);
    }
    char *more = join(options, ",", value);
    free(options);
    options = more;
  }
  if (i >= argc) return usage_error("run", "no program to run");
  char **prog = argv + i;
  char *lib = find_library("run", library);

  // The child's environment, set here before fork: nothing in this process reads it.
  char *preload = join(lib, ":", getenv("LD_PRELOAD"));
  xsetenv("LD_PRELOAD", preload);
  if (*options) {
    char *all = join(getenv("SMPALLOC_OPTIONS"), ",", options);
    xsetenv("SMPALLOC_OPTIONS", all);
    free(all);
  }
  const char *tmp = getenv("TMPDIR");
  char *dir = join(tmp && *tmp ? tmp : "/tmp", "/", "smpalloc-run.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    complain("run", "cannot create a directory %s: %s", dir, strerror(errno));
    return 1;
  }
  char *mark = join(dir, "/", "loaded");
  xsetenv("SMPALLOC_LOADED_MARK", mark);

  // exec's errno comes back through this pipe; it closes with no data when exec succeeds.
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    complain("run", "pipe: %s", strerror(errno));
    remove_private_dir(dir, mark);
    return 1;
  }

  // As system(): SIGINT and SIGQUIT ignored while PROG runs (the terminal sends them to PROG
  // too); the other signals that would end this process quietly go to PROG (unless this process
  // was started ignoring them), so neither is left behind with the private directory. SIGCHLD
  // is made the default, or a caller that ignores it would have the kernel reap PROG before
  // waitpid could. All are blocked until the child's pid is known; the child restores the
  // dispositions and the mask before exec.
  struct sigaction ignore = {.sa_handler = SIG_IGN}, forward = {.sa_handler = forward_signal};
  struct sigaction deflt = {.sa_handler = SIG_DFL};
  sigemptyset(&ignore.sa_mask);
  sigemptyset(&forward.sa_mask);
  sigemptyset(&deflt.sa_mask);
  forward.sa_flags = SA_RESTART;
  enum { IGNORED = 2, FORWARDED = 6 };
  static const int ignored[IGNORED] = {SIGINT, SIGQUIT};
  static const int forwarded[FORWARDED] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE};
  struct sigaction old_ignored[IGNORED], old_forwarded[FORWARDED], old_child;
  sigset_t block, old_mask;
  sigemptyset(&block);
  for (int k = 0; k < IGNORED; k++) sigaddset(&block, ignored[k]);
  for (int k = 0; k < FORWARDED; k++) sigaddset(&block, forwarded[k]);
  sigprocmask(SIG_BLOCK, &block, &old_mask);
  for (int k = 0; k < IGNORED; k++) sigaction(ignored[k], &ignore, &old_ignored[k]);
  for (int k = 0; k < FORWARDED; k++) {
    sigaction(forwarded[k], NULL, &old_forwarded[k]);
    if (old_forwarded[k].sa_handler != SIG_IGN) sigaction(forwarded[k], &forward, NULL);
  }
  sigaction(SIGCHLD, &deflt, &old_child);

  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    complain("run", "fork: %s", strerror(errno));
    remove_private_dir(dir, mark);
    return 1;
  }
  if (pid == 0) { // the child: only async-signal-safe calls until exec
    for (int k = 0; k < IGNORED; k++) sigaction(ignored[k], &old_ignored[k], NULL);
    for (int k = 0; k < FORWARDED; k++) sigaction(forwarded[k], &old_forwarded[k], NULL);
    sigaction(SIGCHLD, &old_child, NULL);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    execvp(prog[0], prog);
    int err = errno;
    ssize_t unused = write(pipefd[1], &err, sizeof err);
    (void)unused;
    _exit(EXIT_NOTFOUND);
  }
  child_pid = pid;
  sigprocmask(SIG_SETMASK, &old_mask, NULL); // a blocked forwarded signal is passed on now

  close(pipefd[1]);
  int exec_errno = 0;
  ssize_t got;
  do got = read(pipefd[0], &exec_errno, sizeof exec_errno);
  while (got < 0 && errno == EINTR);
  close(pipefd[0]);

  int status;
  pid_t w;
  do w = waitpid(pid, &status, 0);
  while (w < 0 && errno == EINTR);
  int wait_errno = errno;
  child_pid = 0; // reaped: a signal from here on has no one to go to
  for (int k = 0; k < IGNORED; k++) sigaction(ignored[k], &old_ignored[k], NULL);
  for (int k = 0; k < FORWARDED; k++) sigaction(forwarded[k], &old_forwarded[k], NULL);
  sigaction(SIGCHLD, &old_child, NULL);

  bool loaded = access(mark, F_OK) == 0;
  remove_private_dir(dir, mark);
  if (got == (ssize_t)sizeof exec_errno) {
    complain("run", "%s: %s", prog[0], strerror(exec_errno));
    return exec_errno == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC;
  }
  if (w < 0) {
    complain("run", "waitpid: %s", strerror(wait_errno));
    return 1;
  }
  if (!loaded) {
    complain("run",
             "%s did not load %s (a static or set-user-ID program?); it ran on its own "
             "allocator",
             prog[0], lib);
    return EXIT_NOT_LOADED;
  }
  if (WIFSIGNALED(status)) return exit_by_signal(WTERMSIG(status));
  return WEXITSTATUS(status);
}

// The directory of the compare scripts: $SMPALLOC_BENCH_DIR, else the installed one (beside the
// command, else at the configured prefix).
static const char *bench_dir(void) {
  const char *dir = getenv("SMPALLOC_BENCH_DIR");
  if (dir && *dir) return dir;
  char *beside = beside_command(SMP_BENCH_FROM_BINDIR);
  return beside ? beside : SMP_BENCH_DIR;
}

// Print compare's usage, then compare.sh's own (its options) when it is there. Returns 0.
static int compare_usage(void) {
  fputs(usage_compare, stdout);
  char *script = join(bench_dir(), "/", "compare.sh");
  xsetenv("SMPALLOC_COMPARE_AS", "smpalloc compare");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execl(script, script, "--help", (char *)NULL);
    _exit(EXIT_NOTFOUND);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    printf("(%s is not there to list them)\n", script);
  free(script);
  return 0;
}

// smpalloc compare: see the header. argv[0] is "compare". compare.sh's options that take a
// value are known so that a value is never read as --library.
static int cmd_compare(int argc, char **argv) {
  static const char *const valued[] = {"--reps",  "--alloc",   "--timeout", "--csv",
                                       "--json",  "--port",    "--idle",    "--ready-timeout",
                                       "--variant", "--base",  "--server",  "--target",
                                       NULL};
  const char *library = NULL;
  char **args = xmalloc(sizeof *args * ((size_t)argc + 2));
  int n = 0;
  char *script = join(bench_dir(), "/", "compare.sh");
  args[n++] = script;
  int i = 1;
  for (; i < argc; i++) {
    const char *arg = argv[i], *value;
    if (strcmp(arg, "--") == 0) break;
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      free(args);
      free(script);
      return compare_usage();
    }
    if (take_value("compare", "--library", argc, argv, &i, &value)) {
      library = value;
      continue;
    }
    args[n++] = argv[i];
    for (int k = 0; valued[k]; k++) {
      if (strcmp(arg, valued[k]) == 0 && i + 1 < argc) {
        args[n++] = argv[++i];
        break;
      }
    }
  }
  if (i + 1 >= argc) { // no "--", or nothing after it
    free(args);
    free(script);
    return usage_error("compare", "no command after --");
  }
  for (; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;

  char *lib = find_library("compare", library);
  xsetenv("SMPALLOC_LIBRARY", lib);
  xsetenv("SMPALLOC_COMPARE_AS", "smpalloc compare");
  execv(script, args);
  int err = errno;
  complain("compare", "%s: %s", script, strerror(err));
  return err == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC;
}

// smpalloc version: prints "smpalloc <version>".
static int cmd_version(int argc, char **argv) {
  if (argc > 1) {
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
      fputs(usage_version, stdout);
      return 0;
    }
    return usage_error("version", "unexpected argument '%s'", argv[1]);
  }
  printf("smpalloc %s\n", SMP_VERSION_STRING);
  return 0;
}

static int cmd_help(int argc, char **argv);

// The commands, by name, with their usage.
static const struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} commands[] = {
    {"run", cmd_run, usage_run},
    {"compare", cmd_compare, usage_compare},
    {"version", cmd_version, usage_version},
    {"help", cmd_help, usage_help},
};

// The command called name, or NULL.
static const struct command *find_command(const char *name) {
  for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
    if (strcmp(commands[k].name, name) == 0) return &commands[k];
  return NULL;
}

// smpalloc help [COMMAND]: the usage of smpalloc or of COMMAND on stdout.
static int cmd_help(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(argc < 2 ? usage_main : usage_help, stdout);
    return 0;
  }
  if (argc > 2) return usage_error("help", "unexpected argument '%s'", argv[2]);
  const struct command *c = find_command(argv[1]);
  if (c == NULL) return usage_error("help", "unknown command '%s'", argv[1]);
  if (c->run == cmd_compare) return compare_usage();
  fputs(c->usage, stdout);
  return 0;
}

// Dispatch on the command word.
int main(int argc, char **argv) {
  if (argc < 2) return usage_error(NULL, "no command");
  const char *name = argv[1];
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (strcmp(name, "--version") == 0) name = "version"; // what users try first
  const struct command *c = find_command(name);
  if (c == NULL) {
    if (name[0] == '-') return usage_error(NULL, "unknown option '%s'", name);
    return usage_error(NULL, "unknown command '%s'", name);
  }
  int status = c->run(argc - 1, argv + 1);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    complain(NULL, "writing to stdout: %s", strerror(errno));
    return 1;
  }
  return status;
}
