"""The machine a benchmark ran on, as the report states it: a latency means nothing without it."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# Distributions whose versions change the numbers; a missing one is reported as absent, not guessed.
LIBRARIES = (
    "fer-edge-toolkit",
    "numpy",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorflow",
    "keras",
    "opencv-python-headless",
    "opencv-python",
    "mediapipe",
    "fer",
)


def describe(pin_core: int | None = None) -> dict:
    """CPU model, cores (all and usable), memory, OS, Python and library versions."""
    return {
        "cpu": cpu_model(),
        "board": board_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(_affinity()) if _affinity() else os.cpu_count(),
        "pinned_core": pin_core,
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": library_versions(),
    }


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 'model name', Arm 'Model' or the part number), else platform."""
    fields = _cpuinfo_fields()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU part"):
        part = fields["CPU part"].lower()
        return _ARM_PARTS.get(part, f"Arm CPU part {part}")
    return platform.processor() or platform.machine() or "unknown"


# Arm parts a Pi-class board has; /proc/cpuinfo on a Pi names the part number, not the core.
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd05": "Cortex-A55"}


def board_model() -> str | None:
    """The board's name on a Raspberry Pi (device tree), None elsewhere."""
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def one_line(machine: dict) -> str:
    """'AMD EPYC, 2 cores (x86_64), Linux 6.1, CPython 3.11.2' for table captions and logs."""
    cores = f"{machine.get('usable_cores')}/{machine.get('cores')} cores"
    pinned = f", pinned to core {machine['pinned_core']}" if machine.get("pinned_core") is not None else ""
    board = f"{machine['board']}, " if machine.get("board") else ""
    where = f"{board}{machine.get('cpu')}, {cores} ({machine.get('arch')}){pinned}"
    return f"{where}, {machine.get('os')}, {machine.get('python')}"


def _cpuinfo_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    return fields


def _affinity() -> set[int]:
    getter = getattr(os, "sched_getaffinity", None)
    return set(getter(0)) if getter else set()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None
