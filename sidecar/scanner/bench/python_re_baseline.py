#!/usr/bin/env python3
"""Python `re` baseline for the scanner benchmark: a case-insensitive alternation of the same
phrases over the benign corpus. Prints the median MB/s of 3 runs.
Usage: python_re_baseline.py benign_corpus_dev.jsonl phrases.txt"""
import json, re, sys, time

docs = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
phrases = [p.strip() for p in open(sys.argv[2], encoding="utf-8") if p.strip() and not p.startswith("#")]
rx = re.compile("|".join(re.escape(p) for p in phrases), re.IGNORECASE)
size = sum(len(d.encode("utf-8")) for d in docs)
rates = []
for _ in range(3):
    t0 = time.perf_counter()
    n = 0
    for d in docs:
        n += sum(1 for _ in rx.finditer(d))
    rates.append(size / 1e6 / (time.perf_counter() - t0))
rates.sort()
print(f"{rates[1]:.2f} MB/s ({n} matches)")
