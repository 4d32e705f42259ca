"""The export report in Markdown: one line per variant while exporting, one table at the end."""

from __future__ import annotations


def entry_line(entry: dict) -> str:
    if entry["status"] != "ok":
        return f"{entry['file']}: FAILED - {entry['error']}"
    text = f"{entry['file']}: {entry['size_bytes'] / 1024:.0f} KiB"
    if "accuracy" in entry:
        text += (
            f", accuracy {entry['accuracy']:.2%} (drop {_drop(entry['accuracy_drop'])}), "
            f"agreement {entry['agreement']:.1%}"
        )
    return text + f", batch-1 latency {entry['latency']['median_ms']:.2f} ms"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _drop(value) -> str:
    """A drop against the float model in percentage points; positive means the variant is worse."""
    return "n/a" if value is None else f"{round(value * 100, 2) + 0.0:.2f} pt"


def to_markdown(report: dict) -> str:
    keras, ev, rep = report["keras"], report["eval_data"], report["representative_data"]
    lines = [
        f"# Export report: {report['name']}",
        "",
        f"Source: `{report['model']}` ({keras['parameters']:,} parameters, "
        f"{keras['size_bytes'] / 1024:.0f} KiB).",
        f"Float Keras model{' with flip TTA baked in' if report.get('flip_tta') else ''}: "
        f"accuracy {_pct(keras['accuracy'])}, macro-F1 "
        + ("n/a" if keras["macro_f1"] is None else f"{keras['macro_f1']:.4f}")
        + ".",
        "Eval data: "
        + (f"{ev['samples']} faces, {ev['split']} of `{ev['source']}`." if ev else "none given."),
        "Representative data: "
        + (
            f"{rep['samples']} faces, class-stratified from {rep['split']} of `{rep['source']}`."
            if rep
            else "none."
        ),
        *_float_ops_lines(report),
        f"Latency: batch 1, LiteRT interpreter, {report['machine']['threads']} thread(s) on "
        f"{report['machine']['cpu']} ({report['machine']['cores']} cores), median (p90).",
        "",
        "| variant | quantizer | input | file | size | accuracy | drop | macro-F1 | drop | agreement "
        "| latency | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        lines.append(_row(v))
    failed = [v for v in report["variants"] if v["status"] != "ok"]
    if failed:
        lines += ["", "## Failed variants", ""] + [f"- `{v['file']}`: {v['error']}" for v in failed]
    comparison = report.get("quantizer_comparison")
    if comparison:
        lines += ["", "## int8: converter or LiteRT quantizer", ""]
        for q, t in comparison["int8"].items():
            lines.append(
                f"- {q}: {t['status']}, {(t['size_bytes'] or 0) / 1024:.0f} KiB, "
                f"accuracy {_pct(t['accuracy'])}, "
                f"agreement {_pct(t['agreement'])}, latency "
                + ("n/a" if t["latency_ms"] is None else f"{t['latency_ms']:.2f} ms")
            )
        lines.append(f"- better on this run: **{comparison['better']}**; default: {comparison['default']}.")
    return "\n".join(lines) + "\n"


def _float_ops_lines(report: dict) -> list[str]:
    int8 = [v for v in report["variants"] if "float_ops" in v]
    if not int8:
        return []

    def ops(counts: dict) -> str:
        return (
            ", ".join(f"{name} ({n} op{'s' * (n > 1)})" for name, n in counts.items())
            or "none (every op int8)"
        )

    return [
        "int8 ops computing in float32: "
        + "; ".join(f"{ops(v['float_ops'])} in `{v['file']}`" for v in int8)
        + "."
    ]


def _row(v: dict) -> str:
    size = f"{v['size_bytes'] / 1024:.0f} KiB" if "size_bytes" in v else "n/a"
    latency = (
        f"{v['latency']['median_ms']:.2f} ({v['latency']['p90_ms']:.2f}) ms" if "latency" in v else "n/a"
    )
    f1 = "n/a" if v.get("macro_f1") is None else f"{v['macro_f1']:.4f}"
    check = "ok" if v["status"] == "ok" else "**FAILED**"
    kind = v["variant"] + (" rgb" if v["mobile_rgb"] else "")
    return (
        f"| {kind} | {v['quantizer']} | {v.get('input_dtype', 'n/a')} | `{v['file']}` | {size} | "
        f"{_pct(v.get('accuracy'))} | {_drop(v.get('accuracy_drop'))} | "
        f"{f1} | {_drop(v.get('macro_f1_drop'))} | "
        f"{_pct(v.get('agreement'))} | {latency} | {check} |"
    )
