"""A threaded allocation workload for running python3 under libhakmem.so.

Run with PYTHONMALLOC=malloc (every Python object comes from malloc) and
PYTHONHASHSEED=0. Threads build dicts, lists, strings and bytes; a queue
hands objects from producer threads to consumer threads (cross-thread
frees). Everything printed is deterministic, so the output with and without
LD_PRELOAD must be identical.
"""

import hashlib
import json
import queue
import random
import re
import sys
import threading
from collections import Counter, OrderedDict, defaultdict

THREADS = 8
STEPS = 8000


def build(tid):
    rnd = random.Random(tid)
    table = {}
    lists = []
    digest = hashlib.sha256()
    lru = OrderedDict()
    for i in range(STEPS):
        key = "k%d-%d" % (tid, rnd.randrange(2500))
        values = table.get(key)
        if values is None:
            table[key] = values = []
        values.append("x" * rnd.randrange(0, 64) + str(i))
        if len(values) > 8:
            del values[: rnd.randrange(1, 8)]
        if i % 11 == 0:
            lists.append([rnd.random() for _ in range(rnd.randrange(0, 50))])
            if len(lists) > 200:
                lists.pop(rnd.randrange(len(lists)))
        if i % 97 == 0:
            big = bytearray(rnd.randrange(1, 400000))
            big[-1] = i & 0xFF
            digest.update(bytes(big[-16:]))
        lru[key] = i
        lru.move_to_end(key)
        if len(lru) > 300:
            lru.popitem(last=False)
        if i % 500 == 0:
            # churn through a big temporary structure
            tmp = {str(j): [j] * (j % 7) for j in range(2000)}
            digest.update(str(sum(len(v) for v in tmp.values())).encode())
    text = json.dumps(table, sort_keys=True)
    digest.update(text.encode())
    digest.update(repr([round(sum(l), 6) for l in lists]).encode())
    words = re.findall(r"k\d+-\d+", text)
    digest.update(json.dumps(Counter(w[-2:] for w in words).most_common(5)).encode())
    digest.update(json.dumps(list(lru.items())[:20]).encode())
    return "%s %d %d" % (digest.hexdigest(), len(table), len(text))


def produce(q, tid):
    rnd = random.Random(1000 + tid)
    for i in range(2000):
        obj = {
            "id": (tid, i),
            "name": "item-%d-%d" % (tid, i) * rnd.randrange(1, 5),
            "payload": [rnd.randrange(1 << 30) for _ in range(rnd.randrange(1, 40))],
            "blob": bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 200))),
        }
        q.put(obj)


def consume(q, sums, lock, count):
    local = 0
    seen = 0
    for _ in range(count):
        obj = q.get()
        data = json.dumps([obj["id"], obj["name"], obj["payload"], obj["blob"].hex()])
        local = (local + int(hashlib.md5(data.encode()).hexdigest(), 16)) % (1 << 128)
        seen += 1
        del obj
    with lock:
        sums["total"] = (sums["total"] + local) % (1 << 128)
        sums["seen"] += seen


def main():
    results = [None] * THREADS

    def run(tid):
        results[tid] = build(tid)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for tid, r in enumerate(results):
        print("thread %d: %s" % (tid, r))

    q = queue.Queue(maxsize=256)
    sums = defaultdict(int)
    lock = threading.Lock()
    producers = [threading.Thread(target=produce, args=(q, t)) for t in range(4)]
    consumers = [threading.Thread(target=consume, args=(q, sums, lock, 2000)) for _ in range(4)]
    for t in producers + consumers:
        t.start()
    for t in producers + consumers:
        t.join()
    print("handoff: %d objects, checksum %032x" % (sums["seen"], sums["total"]))
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
