#!/bin/bash
# ctest's example_kvserver_malformed: malformed and oversized requests get "-ERR ..." and the
# server keeps serving (the same connection where it can resync, a new one where it cannot);
# a SET past --max-memory gets "-ERR out of memory". Then SIGTERM and exit status 0.
# Usage: check_malformed.sh KVSERVER
. "$(dirname "$0")/kv_start.sh"
start_server "$1" --threads 2 --max-memory 1000000
echo "kvserver on 127.0.0.1:$PORT (--max-memory 1000000)"
timeout 40 python3 - "$PORT" <<'PY' || fail "malformed-input checks failed"
import socket, sys, time
port = int(sys.argv[1])
bad = 0

def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s

def line(s):  # one reply line (b"" when the server closed)
    buf = b""
    while not buf.endswith(b"\r\n"):
        b = s.recv(1)
        if not b:
            return buf
        buf += b
    return buf

def reply(s):  # a whole reply: a line, or a bulk string with its payload
    l = line(s)
    if l.startswith(b"$") and l != b"$-1\r\n":
        n = int(l[1:-2])
        data = b""
        while len(data) < n + 2:
            b = s.recv(n + 2 - len(data))
            if not b:
                break
            data += b
        return l + data
    return l

def check(what, got, want_prefix):
    global bad
    ok = got.startswith(want_prefix)
    print("%-4s %-48s -> %r" % ("ok" if ok else "FAIL", what, got[:80]))
    if not ok:
        bad += 1

def closed(s):  # the server closed this connection
    try:
        return s.recv(1) == b""
    except OSError:
        return True

def ping_new(what):
    s = conn(); s.sendall(b"PING\r\n"); check(what + ": PING on a new connection", reply(s), b"+PONG"); s.close()

# Cannot resync: an error, then the connection is closed; the server still serves others.
for what, req in [
        ("bulk length 99999999999", b"*2\r\n$3\r\nGET\r\n$99999999999\r\n"),
        ("bulk length over 1 MiB", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n"),
        ("negative bulk length", b"*2\r\n$3\r\nGET\r\n$-5\r\n"),
        ("bad multibulk count", b"*abc\r\n"),
        ("multibulk count too big", b"*99999999\r\n"),
        ("element not a bulk string", b"*1\r\n:5\r\n"),
        ("bulk without its CRLF", b"*1\r\n$4\r\nPINGxx\r\n"),
        ("length line too long", b"*1\r\n$" + b"1" * 40 + b"\r\n"),
        ("inline line over 64 KiB", b"x" * 70000)]:
    s = conn(); s.sendall(req)
    check(what, line(s), b"-ERR")
    if not closed(s):
        print("FAIL %s: connection left open" % what); bad += 1
    s.close()
    ping_new(what)

# Can resync: an error, and the same connection goes on.
s = conn()
for what, req in [
        ("garbage bytes (inline)", b"\x00\x01\xfe\xff garbage \x7f\r\n"),
        ("unknown command", b"*1\r\n$5\r\nHELLO\r\n"),
        ("GET without a key", b"*1\r\n$3\r\nGET\r\n"),
        ("SET with 3 arguments", b"SET a b c\r\n"),
        ("MSET odd arguments", b"*4\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        ("INCR of a non-number", b"SET word abc\r\nINCR word\r\n")]:
    s.sendall(req)
    if what.startswith("INCR"):
        check("SET word", reply(s), b"+OK")
    check(what, reply(s), b"-ERR")
    s.sendall(b"PING\r\n"); check(what + ": PING on the same connection", reply(s), b"+PONG")

# Values against --max-memory 1000000 (the value type's limit).
def setv(s, key, n):
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, n) + b"v" * n + b"\r\n")
    return reply(s)
check("SET 1000001-byte value (over the limit)", setv(s, b"huge", 1000001), b"-ERR out of memory")
s.sendall(b"PING\r\n"); check("PING after the refused SET", reply(s), b"+PONG")
check("SET 600000-byte value", setv(s, b"a", 600000), b"+OK")
check("SET a second 600000-byte value", setv(s, b"b", 600000), b"-ERR out of memory")
s.sendall(b"GET a\r\n"); got = reply(s)
check("GET a (600000 bytes)", got, b"$600000\r\n" + b"v" * 600000)
s.sendall(b"DEL a\r\n"); check("DEL a", reply(s), b":1")
# a's value is freed after a grace period (and the worker's batch flush): b fits then.
for i in range(100):
    got = setv(s, b"b", 600000)
    if got.startswith(b"+OK"):
        break
    time.sleep(0.1)
check("SET b once a is freed", got, b"+OK")
# Pipelined: three commands in one write, three replies in order.
s.sendall(b"*1\r\n$4\r\nPING\r\nINCR n\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n")
check("pipelined PING", reply(s), b"+PONG")
check("pipelined INCR", reply(s), b":1")
check("pipelined INCR again", reply(s), b":2")
# A command split over many writes.
for b in b"*2\r\n$3\r\nGET\r\n$1\r\nn\r\n":
    s.sendall(bytes([b])); time.sleep(0.001)
check("GET sent a byte at a time", reply(s), b"$1\r\n2")
s.close()
ping_new("the end")
sys.exit(1 if bad else 0)
PY
stop_server
echo PASS
