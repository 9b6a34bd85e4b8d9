# Allocation-heavy, fully deterministic Python workload for the smpalloc LD_PRELOAD tests.
# run_preload.sh runs it with and without the allocator and diffs the output, so every line
# printed here must depend only on the computation: digests, sums and counts, never ids,
# addresses, timings or the iteration order of sets of strings.
import collections
import gc
import hashlib
import json
import random
import sys


def digest(data):
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:24]


def out(label, *values):
    print(label + ":", *values)


rng = random.Random(20240601)
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
         "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa"]

# 1. A couple of hundred thousand small dicts, lists and strings.
N = 200_000
records = []
for i in range(N):
    records.append({
        "id": i,
        "name": "user%06d" % ((i * 7919) % N),
        "score": rng.randint(0, 10**6),
        "tags": [WORDS[i % 16], WORDS[(i * 7) % 16], "t%d" % (i % 97)],
        "note": WORDS[i % 13] * (i % 9),
    })
out("records", len(records), sum(r["score"] for r in records))

# 2. JSON round trip of the whole structure (a ~20 MB string and a full re-parse).
text = json.dumps(records, sort_keys=True)
back = json.loads(text)
out("json", len(text), digest(text), back == records)
del text

# 3. Sorting by composite keys, then by a string key.
by_score = sorted(back, key=lambda r: (r["score"], r["id"]))
out("sort-score", digest(",".join(str(r["id"]) for r in by_score[:5000])),
    by_score[0]["id"], by_score[-1]["id"])
by_name = sorted(back, key=lambda r: (r["name"], -r["id"]))
out("sort-name", digest("".join(r["name"] for r in by_name[::97])))
del by_score, by_name, back

# 4. Fragment the heap: drop two thirds of the records and grow the rest.
survivors = [r for r in records if r["id"] % 3 == 0]
del records
gc.collect()
for r in survivors:
    r["tags"].extend(WORDS[(r["id"] + k) % 16] for k in range(r["id"] % 7))
    r["extra"] = {"sq": r["id"] * r["id"], "s": str(r["score"]) * 3}
out("survivors", len(survivors), sum(len(r["tags"]) for r in survivors),
    digest(json.dumps(survivors[::101], sort_keys=True)))

# 5. Word counting with Counter and defaultdict of lists.
counter = collections.Counter()
groups = collections.defaultdict(list)
for r in survivors:
    counter.update(r["tags"])
    groups[r["score"] % 1000].append(r["name"])
top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
out("counter", len(counter), top)
out("groups", len(groups), sum(len(v) for v in groups.values()),
    digest("|".join(",".join(sorted(groups[k])) for k in sorted(groups))))
del counter, groups, survivors

# 6. Bignums: factorials, Fibonacci numbers and modular powers (many large temporaries).
fact = 1
for k in range(1, 6001):
    fact *= k
a, b = 0, 1
for _ in range(30000):
    a, b = b, a + b
p = pow(3, 200001, (1 << 4099) - 1)
out("bignum", fact.bit_length(), digest(hex(fact)), a.bit_length(), digest(hex(a)),
    digest(hex(p)))
del fact, a, b, p

# 7. Strings: building, splitting, replacing, formatting; bytearray growth (realloc).
parts = []
for i in range(150_000):
    parts.append(f"{WORDS[i % 16]}-{i:07d}-{(i * 2654435761) % 4294967296:08x}")
big = " ".join(parts)
pieces = big.split(" ")
replaced = big.replace("-", "::").upper()
buf = bytearray()
for i in range(100_000):
    buf += parts[i].encode()
    if i % 1000 == 999:
        del buf[: len(buf) // 3]
out("strings", len(big), len(pieces), digest(replaced), len(buf), digest(bytes(buf)))
del parts, big, pieces, replaced, buf

# 8. Reference cycles reclaimed by the cycle collector.
class Node:
    __slots__ = ("val", "next", "data")

    def __init__(self, val):
        self.val = val
        self.next = None
        self.data = [val] * (val % 8)


total = 0
for rnd in range(20):
    nodes = [Node(i + rnd) for i in range(10_000)]
    for i, n in enumerate(nodes):
        n.next = nodes[(i * 31 + 7) % len(nodes)]
    total += sum(n.next.val for n in nodes)
    del nodes
    gc.collect()
out("cycles", total)

# 9. Tuples and sets of integers, dict comprehension churn.
acc = 0
for rnd in range(10):
    s = {(i * 40503 + rnd) % 100_003 for i in range(50_000)}
    d = {k: (k, str(k)) for k in s if k % 2}
    acc += len(s) * 7 + len(d) + sum(sorted(d)[:100])
out("sets", acc)

sys.stdout.flush()
print("done")
