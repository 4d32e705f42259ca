"""One Markdown report with tables and PNG plots, plus JSON for machines, from the results folder.

`fer-bench latency`, `accuracy` and `pipeline` each leave a JSON file in the results folder; the report
reads those present, so it can be rebuilt at any time without measuring again. Plots need Matplotlib;
without it the report says so and keeps its tables.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.machine import one_line
from fer_train.files import atomic_write, read_json, write_json, write_text
from fer_train.spec import CLASSES

KINDS = ("latency", "accuracy", "pipeline")
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
LATENCY_PNG = "latency.png"
TRADEOFF_PNG = "accuracy_vs_latency.png"
PIPELINE_PNG = "pipeline.png"


def result_file(folder: Path, kind: str) -> Path:
    return Path(folder) / f"{kind}.json"


def read_results(folder: Path) -> dict[str, dict]:
    """The results present in `folder`, by kind; a damaged file is an error, a missing one is not."""
    found = {}
    for kind in KINDS:
        path = result_file(folder, kind)
        if not path.is_file():
            continue
        try:
            data = read_json(path)
        except (OSError, ValueError) as err:
            raise BenchError(f"{path}: not a readable results file ({err})") from None
        if not isinstance(data, dict) or data.get("kind") != f"fer-bench/{kind}":
            raise BenchError(f"{path}: not a fer-bench {kind} results file")
        found[kind] = data
    if not found:
        raise BenchError(
            f"{folder}: no results to report (run fer-bench latency/accuracy/pipeline --out {folder})"
        )
    return found


# What a results file edited by hand, cut short by a tool, or written by another version raises when a
# field the report reads is missing or of the wrong type.
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def _check_readable(folder: Path, kind: str, doc: dict) -> None:
    """Render `kind`'s tables alone, so a results file the report cannot read is named in one line
    before anything is written."""
    try:
        summary = summarize({kind: doc})
        markdown({kind: doc}, summary, {}, [])
    except MALFORMED as err:
        raise _unreadable(folder, kind, err) from None


def _unreadable(folder: Path, kind: str, err: Exception) -> BenchError:
    what = f"no {err}" if isinstance(err, KeyError) else str(err)
    return BenchError(
        f"{result_file(folder, kind)}: a field is missing or wrong ({what}); measure it again "
        f"(fer-bench {kind} ... --out {folder} --force)"
    )


def outputs(folder: Path) -> list[Path]:
    """What `write` may create, for the overwrite check."""
    return [Path(folder) / REPORT_MD, Path(folder) / REPORT_JSON]


def write(folder: Path) -> tuple[Path, Path, list[str]]:
    """report.md, report.json and the plots in `folder`; returns their paths and notes for the user."""
    folder = Path(folder)
    results = read_results(folder)
    for kind, doc in results.items():
        _check_readable(folder, kind, doc)
    summary = summarize(results)
    plots, notes = _plots(folder, results, summary)
    md = markdown(results, summary, plots, notes)
    doc = {
        "kind": "fer-bench/report",
        "created": _now(),
        "summary": summary,
        "plots": plots,
        "notes": notes,
        **results,
    }
    return write_text(folder / REPORT_MD, md), write_json(folder / REPORT_JSON, doc), notes


# --- numbers ---------------------------------------------------------------------------------------


def summarize(results: dict[str, dict]) -> list[dict]:
    """One row per model: size, batch-1 latency at the fewest threads measured, accuracy, loss."""
    rows: dict[str, dict] = {}
    for entry in _entries(results):
        rows[entry["key"]] = {
            "model": entry["key"],
            "origin": entry.get("origin"),
            "variant": entry.get("variant"),
            "size_bytes": entry.get("size_bytes"),
        }
    lat = results.get("latency")
    if lat:
        for key, r in fewest_threads(lat["results"]).items():
            rows.setdefault(key, {"model": key}).update(
                {
                    "threads": r["threads"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "p99_ms": r["latency_ms"]["p99"],
                    "throughput_fps": r["throughput_fps"],
                    "peak_memory_mb": r["memory_mb"]["delta"],
                }
            )
    acc = results.get("accuracy")
    if acc:
        for r in acc["results"]:
            row = rows.setdefault(r["model"], {"model": r["model"]})
            row.update({"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]})
            if r.get("vs_reference"):
                row["accuracy_loss_pp"] = r["vs_reference"]["accuracy_loss_pp"]
                row["top1_agreement"] = r["vs_reference"]["top1_agreement"]
    return list(rows.values())


def fewest_threads(results: list[dict]) -> dict[str, dict]:
    """Per model, its measurement at the smallest thread count (the Pi-class number)."""
    best: dict[str, dict] = {}
    for r in results:
        if r["model"] not in best or r["threads"] < best[r["model"]]["threads"]:
            best[r["model"]] = r
    return best


def _entries(results: dict[str, dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for kind in ("latency", "accuracy"):
        for entry in results.get(kind, {}).get("models", []):
            seen.setdefault(entry["key"], entry)
    return list(seen.values())


# --- Markdown --------------------------------------------------------------------------------------


def markdown(results: dict[str, dict], summary: list[dict], plots: dict, notes: list[str]) -> str:
    parts = ["# fer-bench report", "", f"Written {_now()} from the results in this folder.", ""]
    parts += _summary_md(summary)
    parts += _models_md(_entries(results))
    if "latency" in results:
        parts += latency_md(results["latency"], plots)
    if "accuracy" in results:
        parts += accuracy_md(results["accuracy"], plots)
    if "pipeline" in results:
        parts += pipeline_md(results["pipeline"], plots)
    parts += _machines_md(results)
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    commands = dict.fromkeys(r["command"] for r in results.values() if r.get("command"))  # `all`: one
    parts += ["## Reproduce", "", "```", *commands]
    parts += ["fer-bench report --out <this folder>", "```", ""]
    return "\n".join(parts)


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(names: list[str], left: int = 1) -> list[str]:
    """A table's header and alignment rows: the first `left` columns text, the rest numbers."""
    return [_row(names), "|" + "---|" * left + "---:|" * (len(names) - left)]


SUMMARY_COLUMNS = [
    "model", "variant", "size", "threads", "p50 ms", "p99 ms", "faces/s", "peak memory",
    "accuracy", "macro-F1", "loss vs reference",
]  # fmt: skip


def _summary_md(summary: list[dict]) -> list[str]:
    lines = [
        "## Summary",
        "",
        "Latency is one face per call at the fewest threads measured; "
        "accuracy is single-crop on the data named below.",
        "",
        *_header(SUMMARY_COLUMNS, left=2),
    ]
    for r in summary:
        lines.append(
            _row(
                [
                    r["model"],
                    r.get("variant") or "-",
                    _size(r.get("size_bytes")),
                    r.get("threads", "-"),
                    _num(r.get("p50_ms"), 3),
                    _num(r.get("p99_ms"), 3),
                    _num(r.get("throughput_fps"), 0),
                    _mb(r.get("peak_memory_mb")),
                    _pct(r.get("accuracy")),
                    _num(r.get("macro_f1"), 4),
                    _signed(r.get("accuracy_loss_pp"), " pp"),
                ]
            )
        )
    return lines + [""]


def _models_md(entries: list[dict]) -> list[str]:
    lines = ["## Models", "", *_header(["model", "whose", "variant", "file size", "input", "file"], left=3)]
    lines[-1] = "|---|---|---|---:|---|---|"
    for e in entries:
        name = Path(e["path"]).name
        lines.append(
            _row(
                [
                    e["key"],
                    e.get("origin"),
                    e.get("variant"),
                    _size(e.get("size_bytes")),
                    e.get("input", ""),
                    f"`{name}`",
                ]
            )
        )
    return lines + [""]


def latency_md(lat: dict, plots: dict) -> list[str]:
    s = lat["settings"]
    pinned = f", pinned to core {s['pin_core']}" if s.get("pin_core") is not None else ""
    columns = [
        "model", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "faces/s (batch 1)",
        f"faces/s (batch {s['batch']})", "load ms", "peak memory", "size",
    ]  # fmt: skip
    lines = [
        "## Latency",
        "",
        f"On {one_line(lat['machine'])}. Batch 1: {s['warmup']} warm-up calls, then {s['runs']} timed "
        f"calls of `predict` on one 48x48 face ({s['faces']}){pinned}; the time includes the model's "
        "input conversion. "
        f"Batch throughput: `predict` on {s['batch']} faces at once. "
        f"Peak memory: {lat.get('memory_method', '')}.",
        "",
        *_header(columns),
    ]
    for r in lat["results"]:
        m = r["latency_ms"]
        lines.append(
            _row(
                [
                    r["model"],
                    r["threads"],
                    f"{m['p50']:.3f}",
                    f"{m['p90']:.3f}",
                    f"{m['p99']:.3f}",
                    f"{m['mean']:.3f}",
                    f"{r['throughput_fps']:.0f}",
                    f"{r['batch_throughput_fps']:.0f}",
                    f"{r['load_ms']:.1f}",
                    _mb(r["memory_mb"]["delta"]),
                    _size(r["size_bytes"]),
                ]
            )
        )
    lines.append("")
    if LATENCY_PNG in plots.values():
        lines += [f"![latency distributions]({LATENCY_PNG})", ""]
    return lines + _notes(lat)


def _notes(doc: dict) -> list[str]:
    notes = doc.get("notes") or []
    return [f"- {n}" for n in notes] + ([""] if notes else [])


def accuracy_md(acc: dict, plots: dict) -> list[str]:
    data, ref = acc["data"], acc.get("reference")
    ref_text = (
        f"Our reference: **{ref['model']}** ({ref['kind']}), accuracy {_pct(ref['accuracy'])}. "
        if ref
        else "No reference for our models (pass --reference, or include an fp32 model). "
    )
    ref_text += (
        "A peer is compared with its own float model. Loss = the reference's accuracy minus the model's, "
        "in percentage points; agreement = the same top-1 answer as the reference."
    )
    lines = [
        "## Accuracy",
        "",
        f"{data['samples']} faces of the {data['split']} split of `{data['path']}`"
        + (f" (a random subset of {data['of']})" if data["samples"] < data["of"] else "")
        + ", single crop. "
        + ref_text,
        "",
        "| model | accuracy | macro-F1 | reference | its accuracy | loss | agreement | mean abs prob diff |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in acc["results"]:
        v = r.get("vs_reference") or {}
        lines.append(
            _row(
                [
                    r["model"],
                    _pct(r["accuracy"]),
                    f"{r['macro_f1']:.4f}",
                    v.get("reference", "-"),
                    _pct(v.get("reference_accuracy")),
                    _signed(v.get("accuracy_loss_pp"), " pp"),
                    _pct(v.get("top1_agreement")),
                    _num(v.get("mean_abs_prob_diff"), 4),
                ]
            )  # fmt: skip
        )
    lines += ["", "Recall per class:", "", "| model | " + " | ".join(CLASSES) + " |"]
    lines.append("|---|" + "---:|" * len(CLASSES))
    for r in acc["results"]:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r['recall'][c]:.3f}" for c in CLASSES) + " |")
    lines.append("")
    if TRADEOFF_PNG in plots.values():
        lines += [f"![accuracy against latency]({TRADEOFF_PNG})", ""]
    confusions = [(k, v) for k, v in plots.items() if k.startswith("confusion:")]
    if confusions:
        lines += ["Confusion matrices (rows: true class, normalized; counts below):", ""]
        lines += [f"![confusion matrix of {k.split(':', 1)[1]}]({v})" for k, v in confusions] + [""]
    return lines + _notes(acc)


def pipeline_md(pipe: dict, plots: dict) -> list[str]:
    lines = [
        "## Pipeline",
        "",
        f"On {one_line(pipe['machine'])}. Source `{pipe['source']}`, "
        f"{pipe['settings'].get('description', '')}",
        "",
        "| model | frames | FPS | faces/frame | "
        + " | ".join(f"{s} ms" for s in pipe["stages"])
        + " | total ms |",
        "|---|---:|---:|---:|" + "---:|" * (len(pipe["stages"]) + 1),
    ]
    for r in pipe["results"]:
        stage = " | ".join(f"{r['stages_ms'][s]['mean']:.2f}" for s in pipe["stages"])
        lines.append(
            f"| {r['model']} | {r['frames']} | {r['fps']:.1f} | {r['faces_per_frame']:.2f} | {stage} | "
            f"{r['frame_ms']['mean']:.2f} |"
        )
    lines.append("")
    if PIPELINE_PNG in plots.values():
        lines += [f"![pipeline stage split]({PIPELINE_PNG})", ""]
    return lines + _notes(pipe)


def _machines_md(results: dict[str, dict]) -> list[str]:
    lines = ["## Machine", ""]
    for kind, r in results.items():
        m = r["machine"]
        libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
        lines.append(f"- {kind}: {one_line(m)}; {m.get('memory_gb')} GB memory; {libs}")
    return lines + [""]


def _num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _signed(x, unit: str = "") -> str:
    return "-" if x is None else f"{x:+.2f}{unit}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _mb(x) -> str:
    return "-" if x is None else f"{x:.1f} MB"


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- plots -----------------------------------------------------------------------------------------


def _plots(folder: Path, results: dict[str, dict], summary: list[dict]) -> tuple[dict, list[str]]:
    try:
        import matplotlib
    except ImportError:
        return {}, ["no plots: Matplotlib is not installed (pip install matplotlib)"]
    matplotlib.use("Agg")
    plots: dict[str, str] = {}
    kind = "latency"
    try:
        if "latency" in results:
            plots["latency"] = plot_latency(results["latency"], folder / LATENCY_PNG).name
        if "latency" in results and "accuracy" in results:
            plots["tradeoff"] = plot_tradeoff(summary, folder / TRADEOFF_PNG).name
        if "accuracy" in results:
            from fer_train.evaluate import plot_confusion

            kind = "accuracy"
            for r in results["accuracy"]["results"]:
                name = f"confusion_{_safe(r['model'])}.png"
                plot_confusion(r["confusion_matrix"], folder / name, title=f"{r['model']}: confusion matrix")
                plots[f"confusion:{r['model']}"] = name
        if "pipeline" in results:
            kind = "pipeline"
            plots["pipeline"] = plot_pipeline(results["pipeline"], folder / PIPELINE_PNG).name
    except MALFORMED as err:  # a field only a plot reads (latency samples, confusion matrices)
        raise _unreadable(folder, kind, err) from None
    return plots, []


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "model"


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return path


def plot_latency(lat: dict, path: Path) -> Path:
    """Box plots of the batch-1 latency per model and thread count (whiskers at p1 and p99)."""
    import matplotlib.pyplot as plt

    rows = lat["results"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ax.boxplot(
        [r["samples_ms"] for r in rows],
        vert=False,
        whis=(1, 99),
        showfliers=False,
        tick_labels=[f"{r['model']} ({r['threads']}t)" for r in rows],
    )
    ax.set_xlabel("latency per face, ms (box: p25-p75, whiskers: p1-p99)")
    ax.set_title("Batch-1 latency")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_tradeoff(summary: list[dict], path: Path) -> Path:
    """Accuracy against p50 latency, one point per model: up and left is better."""
    return _save(tradeoff_figure(summary), path)


def tradeoff_figure(summary: list[dict]):
    """The accuracy-latency plot. Each model gets its own marker and colour, named in a legend outside
    the axes: labels written beside the points overlap as soon as two models are close."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(
        r for r in summary if r.get("p50_ms") is not None and r.get("accuracy") is not None
    ):
        peer = r.get("origin") not in (None, "fer-edge-toolkit")
        ax.scatter(
            r["p50_ms"],
            100 * r["accuracy"],
            marker="s" if peer else "o^vD<>ph*"[i % 9],
            s=60,
            color="black" if peer else colours[i % len(colours)],
            label=f"{r['model']} ({r.get('variant')}): {100 * r['accuracy']:.1f}%, {r['p50_ms']:.2f} ms",
        )
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("p50 latency per face, ms (fewest threads measured)")
    ax.set_ylabel("accuracy, %")
    ax.set_title("Accuracy against latency (up and left is better; black square: peer)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_pipeline(pipe: dict, path: Path) -> Path:
    """Stacked mean time per frame by stage, per model."""
    import matplotlib.pyplot as plt

    rows, stages = pipe["results"], pipe["stages"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    left = np.zeros(len(rows))
    for stage in stages:
        values = np.array([r["stages_ms"][stage]["mean"] for r in rows])
        ax.barh([r["model"] for r in rows], values, left=left, label=stage)
        left += values
    ax.set_xlabel("mean ms per frame")
    ax.set_title("Pipeline time per frame by stage")
    # Below the axes, never over the bars.
    ax.legend(fontsize=8, ncols=len(stages), loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return _save(fig, path)
