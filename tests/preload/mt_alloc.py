# Multi-threaded allocation churn for the smpalloc LD_PRELOAD tests: 8 worker threads build
# and discard many objects, and objects made by one thread are freed by another (through a
# queue), so the allocator's cross-thread free path is used. The GIL serialises bytecode but
# switches threads every few milliseconds, so all eight thread caches stay live at once.
# Output is deterministic: results are combined in submission order or order-independently.
import concurrent.futures
import hashlib
import json
import queue
import threading

THREADS = 8


def digest(data):
    return hashlib.sha256(data.encode()).hexdigest()[:20]


def build(task):
    """Build a few thousand objects of mixed sizes, keep a little, drop the rest."""
    acc = []
    total = 0
    for rnd in range(12):
        objs = [{"k": task, "r": rnd, "s": "x" * ((i * 37 + task) % 300),
                 "l": list(range(i % 50))} for i in range(2500)]
        blob = json.dumps(objs[::50], sort_keys=True)
        total += len(blob) + sum(len(o["s"]) + len(o["l"]) for o in objs)
        acc.append(blob[: 64 + task])
        big = bytearray(b"%d" % task) * (1000 + 4000 * (rnd % 5))  # large blocks too
        total += len(big)
        del objs, big
    return task, total, digest("".join(acc))


# 1. A pool of 8 threads running 48 tasks; map() returns results in submission order.
with concurrent.futures.ThreadPoolExecutor(max_workers=THREADS) as pool:
    results = list(pool.map(build, range(48)))
for task, total, dg in results[:4]:
    print("task", task, total, dg)
print("pool", len(results), sum(t for _, t, _ in results), digest(repr(results)))

# 2. Producers allocate, consumers free: 4 + 4 threads over a bounded queue.
q = queue.Queue(maxsize=256)
lock = threading.Lock()
consumed = {"items": 0, "bytes": 0, "check": 0}
PRODUCERS, PER_PRODUCER = 4, 6000


def producer(pid):
    for i in range(PER_PRODUCER):
        n = (i * 131 + pid * 17) % 700
        q.put((pid, i, "p%d-%d" % (pid, i) * (n // 8 + 1), [i] * (n % 40), bytes(n * 3)))
    q.put(None)


def consumer():
    items = size = check = 0
    while True:
        item = q.get()
        if item is None:
            break
        pid, i, s, lst, raw = item
        items += 1
        size += len(s) + len(lst) + len(raw)
        check = (check + pid * 1_000_003 + i * 7 + len(s)) % (1 << 61)
        del item, s, lst, raw  # freed here, in a thread other than the one that made it
    with lock:
        consumed["items"] += items
        consumed["bytes"] += size
        consumed["check"] = (consumed["check"] + check) % (1 << 61)


threads = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
threads += [threading.Thread(target=consumer) for _ in range(PRODUCERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("queue", consumed["items"], consumed["bytes"], consumed["check"])

# 3. Short-lived threads: each one's cache is created and torn down.
shared = [None] * 64


def short(idx):
    data = {str(j): [j] * (j % 13) for j in range(3000 + idx)}
    shared[idx] = sum(len(v) for v in data.values())


for wave in range(4):
    ts = [threading.Thread(target=short, args=(wave * 16 + k,)) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
print("short", sum(shared), digest(repr(shared)))
print("done")
