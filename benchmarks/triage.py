"""Triage latency on live partial transcripts: the rules alone and the rules with the learned model.

Replays every dev-set call word by word (as partial transcripts arrive) and times Triage.decide on each
partial, for both configurations in the same run. The baseline in the same run is one pass of a compiled
regex word scan over the same text, so the ratio says how much work triage does per partial relative to
merely reading the words. Target: a transcript update triaged in under 10 ms at p95.

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/triage.py [FILE.jsonl]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

from routing.triage import Triage
from routing.types import TriageInput

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "calls" / "dev.jsonl"
WORD_RE = re.compile(r"\w+")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def replay(triage: Triage, calls: list[dict]) -> tuple[list[float], list[float], list[float]]:
    partial_ms: list[float] = []
    final_ms: list[float] = []
    baseline_ms: list[float] = []
    for call in calls:
        words = call["caller"].split()
        for count in range(1, len(words) + 1):
            text = " ".join(words[:count])
            inp = TriageInput(dialled=call["dialed"], language=call["language"], transcript=text)
            t0 = time.perf_counter()
            triage.decide(inp)
            elapsed = (time.perf_counter() - t0) * 1000
            (final_ms if count == len(words) else partial_ms).append(elapsed)
            t0 = time.perf_counter()
            WORD_RE.findall(text)
            baseline_ms.append((time.perf_counter() - t0) * 1000)
    return partial_ms, final_ms, baseline_ms


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_FILE
    calls = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} (shared machine: absolute times vary, ratios less)"
    )
    words_per_call = statistics.mean(len(c["caller"].split()) for c in calls)
    print(f"calls: {len(calls)}, mean words per call: {words_per_call:.0f}")
    configurations = (
        ("rules alone", False, True),
        ("rules + learned model, place names only as heard exactly", True, False),
        ("rules + learned model (as shipped: misheard place names matched too)", True, True),
    )
    for label, with_model, fuzzy_places in configurations:
        started = time.perf_counter()
        triage = Triage.from_data_dir(with_model=with_model)
        build_s = time.perf_counter() - started
        if not fuzzy_places:
            triage.gazetteer.fuzzy_min_similarity = 1.0
        if with_model and triage.model is None:
            print("no learned model in routing/data/model/: run `izs triage train`")
            continue
        triage.decide(TriageInput(dialled="112", transcript="zahřátí"))  # lazy dictionaries
        partial_ms, final_ms, baseline_ms = replay(triage, calls)
        everything = partial_ms + final_ms
        print(f"\n{label} ({triage.rules_version}); built in {build_s:.2f} s")
        print(
            f"  decide on a transcript update: median {statistics.median(everything):.2f} ms, "
            f"p95 {pct(everything, 0.95):.2f} ms, max {max(everything):.2f} ms  (target p95 < 10 ms)"
        )
        print(
            f"  decide on the full call: median {statistics.median(final_ms):.2f} ms, "
            f"p95 {pct(final_ms, 0.95):.2f} ms"
        )
        ratio = statistics.median(everything) / max(statistics.median(baseline_ms), 1e-6)
        print(
            f"  baseline word scan median {statistics.median(baseline_ms) * 1000:.1f} us; "
            f"decide/baseline = {ratio:.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
