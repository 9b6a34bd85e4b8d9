// The malloc-free text formatter (lib/support/debug.c): every write(2) it makes to a file ends a
// line, so text another writer appends to the same file between two of its writes (the stats
// signal's "skipped" line beside a report, a warning) never lands inside a line. A
// SOCK_SEQPACKET socket keeps each write a message of its own, so the test sees each one.
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "debug.h"

Test(text, each_write_ends_a_line) {
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  smp_text_t t;
  smp_text_init(&t, sv[0]);
  char line[200];
  size_t total = 0;
  for (int i = 0; i < 60; i++) { // lines of 1 to 197 bytes: 5.9 KiB, several buffers' worth
    size_t n = 1 + (size_t)(i * 37) % 197;
    memset(line, 'a' + i % 26, n);
    line[n] = '\n';
    line[n + 1] = 0;
    smp_text_str(&t, line);
    total += n + 1;
  }
  smp_text_flush(&t);
  close(sv[0]);
  static char msg[4096];
  size_t got = 0;
  int writes = 0;
  ssize_t n;
  while ((n = recv(sv[1], msg, sizeof msg, 0)) > 0) {
    cr_assert_eq(msg[n - 1], '\n', "write %d (%zd bytes) ends inside a line", writes, n);
    got += (size_t)n;
    writes++;
  }
  cr_assert_eq(got, total);
  cr_assert_gt(writes, 1, "the text fit one buffer: the test proves nothing");
}
