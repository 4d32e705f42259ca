"""Latency at batch 1: warm-up, then per-call times of `predict` on one face, and what it costs in memory.

Each (model, threads) measurement runs in a fresh Python process by default, so one model's arena, the
allocator's cached pages and XNNPACK's weight cache never flatter or burden the next one, and peak
memory is that model's alone. Memory is the process's peak resident set size (Linux VmHWM) minus its
resident size just before the model was loaded: TFLite allocates in C++, where tracemalloc sees nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.models import ModelEntry, open_entry
from fer_edge.runtime import MAX_THREADS

MEMORY_METHOD = "peak RSS (VmHWM) minus RSS before loading the model, in a fresh process per measurement"
MEMORY_METHOD_SHARED = "peak RSS (VmHWM) minus RSS before loading the model, all models in one process"


# Every timed call is kept (latency.json holds the samples) and a batch is allocated whole, so both are
# bounded: a billion runs took 8 GB before the first call, a batch of a billion faces 2 TiB.
MAX_RUNS = 100_000
MAX_BATCH = 1024


@dataclass(frozen=True)
class Settings:
    """How latency is measured; the CLI's defaults are these."""

    threads: str = "1,2,4"  # comma-separated interpreter thread counts
    runs: int = 500
    warmup: int = 50
    batch: int = 32  # the batch of the throughput-at-batch measurement, besides batch 1
    pin_core: int | None = None


def parse_threads(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; every count must be a positive integer."""
    try:
        counts = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise BenchError(
            f"--threads {text!r}: expected positive integers separated by commas, e.g. 1,2,4"
        ) from None
    if not counts or min(counts) < 1 or max(counts) > MAX_THREADS:
        raise BenchError(
            f"--threads {text!r}: expected counts from 1 to {MAX_THREADS} separated by commas, e.g. 1,2,4"
        )
    return list(dict.fromkeys(counts))


def check_core(core: int | None) -> None:
    if core is None:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise BenchError("--pin-core needs os.sched_setaffinity, which this OS lacks (Linux has it)")
    allowed = sorted(os.sched_getaffinity(0))
    if core not in allowed:
        raise BenchError(f"--pin-core {core}: this process may run on cores {allowed} only")


def stats(samples_ms: np.ndarray) -> dict:
    """p50/p90/p99, mean, std, min and max of per-call times in milliseconds."""
    s = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(s, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(s.mean()),
        "std": float(s.std()),
        "min": float(s.min()),
        "max": float(s.max()),
    }


def measure(entry: ModelEntry, threads: int, faces: np.ndarray, settings: Settings) -> dict:
    """One (model, threads) measurement in this process: load, warm up, time, and read memory."""
    if settings.pin_core is not None:
        os.sched_setaffinity(0, {settings.pin_core})
    _reset_peak_rss()
    baseline = _rss_mb()
    start = time.perf_counter()
    clf = open_entry(entry, threads)
    load_ms = (time.perf_counter() - start) * 1e3
    one = faces[:1]
    start = time.perf_counter()
    clf.predict(one)
    first_ms = (time.perf_counter() - start) * 1e3
    for _ in range(settings.warmup):
        clf.predict(one)
    samples = np.empty(settings.runs, dtype=np.float64)
    for i in range(settings.runs):
        t0 = time.perf_counter_ns()
        clf.predict(one)
        samples[i] = (time.perf_counter_ns() - t0) / 1e6
    batch_fps = _batch_throughput(clf, faces, settings)
    peak = _peak_rss_mb()
    return {
        "model": entry.key,
        "threads": threads,
        "runs": settings.runs,
        "warmup": settings.warmup,
        "latency_ms": stats(samples),
        "throughput_fps": float(settings.runs / (samples.sum() / 1e3)),
        "batch": int(len(faces)),
        "batch_throughput_fps": batch_fps,
        "load_ms": load_ms,
        "first_call_ms": first_ms,
        "memory_mb": {
            "baseline": baseline,
            "peak": peak,
            "delta": None if peak is None or baseline is None else max(0.0, peak - baseline),
        },
        "size_bytes": entry.size_bytes,
        "samples_ms": [round(float(x), 4) for x in samples],
    }


def _batch_throughput(clf, faces: np.ndarray, settings: Settings) -> float:
    """Faces per second when `predict` gets the whole batch at once (what a multi-face frame sees)."""
    clf.predict(faces)  # the first call at a new batch size re-plans the interpreter
    calls = max(3, min(50, settings.runs // 10))
    start = time.perf_counter()
    for _ in range(calls):
        clf.predict(faces)
    return float(calls * len(faces) / (time.perf_counter() - start))


def measure_isolated(entry: ModelEntry, threads: int, faces_file: Path, settings: Settings) -> dict:
    """`measure` in a fresh Python process; its result comes back as JSON on stdout."""
    job = {
        "entry": entry.to_dict(),
        "threads": threads,
        "faces": str(faces_file),
        "settings": settings.__dict__,
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fer_bench.latency"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
        )
    except OSError as err:  # e.g. under qemu user-mode emulation, which cannot start a child Python
        raise BenchError(
            f"cannot start a measuring process ({err.strerror or err}); use --in-process to measure here"
        ) from None
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BenchError(f"{entry.path}: the latency measurement failed ({why})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    entries: list[ModelEntry],
    thread_counts: list[int],
    faces: np.ndarray,
    settings: Settings,
    isolate: bool = True,
    progress=None,
) -> list[dict]:
    """Every (model, threads) measurement, models in the order given."""
    check_core(settings.pin_core)
    if not (1 <= settings.runs <= MAX_RUNS and 1 <= settings.batch <= MAX_BATCH and settings.warmup >= 0):
        raise BenchError(
            f"runs 1 to {MAX_RUNS:,}, batch 1 to {MAX_BATCH}, warm-up at least 0; got {settings}"
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        faces_file = Path(tmp) / "faces.npy"
        try:  # the measuring processes read the faces from here
            np.save(faces_file, faces)
        except OSError as err:
            raise BenchError(
                f"{tmp}: cannot write the faces to measure with ({err}); --in-process needs no file"
            ) from None
        for entry in entries:
            for threads in thread_counts:
                if isolate:
                    result = measure_isolated(entry, threads, faces_file, settings)
                else:
                    result = _measure_here(entry, threads, faces, settings)
                result["memory_method"] = MEMORY_METHOD if isolate else MEMORY_METHOD_SHARED
                results.append(result)
                if progress is not None:
                    progress(entry, threads, result)
    return results


def _measure_here(entry: ModelEntry, threads: int, faces: np.ndarray, settings: Settings) -> dict:
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        return measure(entry, threads, faces, settings)
    finally:
        if before is not None and settings.pin_core is not None:
            os.sched_setaffinity(0, before)


# --- memory ----------------------------------------------------------------------------------------


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def _peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
        except (ImportError, OSError):
            return None
    return kb / 1024


def _reset_peak_rss() -> None:
    """Start the peak at the current RSS, so import-time peaks are not counted (Linux 4.0+)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _worker() -> int:
    """Entry of the isolated measurement: a job as JSON on stdin, the result as JSON on stdout."""
    job = json.loads(sys.stdin.read())
    entry = ModelEntry(**job["entry"])
    faces = np.load(job["faces"])
    try:
        result = measure(entry, int(job["threads"]), faces, Settings(**job["settings"]))
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
