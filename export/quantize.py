"""`fer-export quantize` as a function: export every requested variant and measure what each costs.

For each variant: convert (converter or LiteRT quantizer), embed metadata, verify against Keras on
sample faces, write it with labels.txt and a JSON card beside it, then evaluate it on the eval data
in the LiteRT interpreter (accuracy, macro-F1, agreement with the float model, batch-1 latency).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_edge.classifier import Classifier
from fer_export import card as cards
from fer_export import litert_quantizer
from fer_export.convert import ConversionError, convert
from fer_export.formats import FORMAT, MODES, TOLERANCES
from fer_export.model_file import LABELS_FILE
from fer_export.representative import stratified_indices
from fer_export.variant import (
    VERIFY_SAMPLES,
    Exported,
    ExportError,
    build_variant,
    check_images,
    check_model,
    load_keras_model,
)
from fer_export.verify import Tolerance, VerificationError
from fer_train.files import refuse_overwrite, write_bytes, write_json, write_text
from fer_train.spec import CLASSES

QUANTIZERS = ("converter", "litert")
# Chosen by measurement (export/README.md, "Converter or LiteRT quantizer"): on FER2013 the converter's
# int8 model kept more accuracy than litert-quantizer's static_wi8_ai8 at the same size.
DEFAULT_QUANTIZER = "converter"
REPORT_NAME = "export_report"


@dataclass
class Options:
    model: Path
    out: Path
    modes: list[str]
    rep_data: Path | None = None
    rep_split: str = "train"
    rep_samples: int = 500
    eval_data: Path | None = None
    eval_split: str = "test"
    eval_samples: int = 0  # 0: the whole split
    name: str | None = None
    io_type: str = "int8"
    quantizer: str = DEFAULT_QUANTIZER
    compare_quantizers: bool = False
    mobile: bool = False
    flip_tta: bool = False
    threads: int = 1
    tolerance: float | None = None
    force: bool = False
    seed: int = 0
    skip_bad: bool = False


@dataclass
class Job:
    mode: str
    quantizer: str = "converter"
    mobile: bool = False
    io_type: str = "int8"

    @property
    def label(self) -> str:
        text = self.mode
        if self.mode == "int8":
            text += f" ({self.quantizer})"
        return text + (" rgb" if self.mobile else "")

    def file_name(self, name: str, main_quantizer: str) -> str:
        stem = f"{name}_{self.mode}"
        if self.mode == "int8" and self.quantizer != main_quantizer:
            stem += f"_{self.quantizer}"
        return stem + ("_rgb" if self.mobile else "") + ".tflite"


@dataclass
class Data:
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def parse_modes(text: str) -> list[str]:
    modes = (
        list(MODES)
        if text.strip().lower() == "all"
        else [m.strip().lower() for m in text.split(",") if m.strip()]
    )
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ExportError(
            f"unknown mode {', '.join(bad) or text!r}: use {'|'.join(MODES)}, a comma list, or all"
        )
    return list(dict.fromkeys(modes))


def plan(opts: Options) -> list[Job]:
    jobs = []
    for mode in opts.modes:
        jobs.append(Job(mode, opts.quantizer if mode == "int8" else "converter", False, opts.io_type))
        if mode == "int8" and opts.compare_quantizers:
            other = next(q for q in QUANTIZERS if q != opts.quantizer)
            jobs.append(Job(mode, other, False, opts.io_type))
    if opts.mobile:
        # MediaPipe Tasks feed uint8 or float32 images only, so the RGB int8 model takes uint8 bytes.
        jobs += [
            Job(m, "converter", True, "uint8" if opts.io_type == "int8" else opts.io_type) for m in opts.modes
        ]
    return jobs


def output_paths(opts: Options, name: str, jobs: list[Job]) -> list[Path]:
    paths = [opts.out / f"{REPORT_NAME}.md", opts.out / f"{REPORT_NAME}.json", opts.out / LABELS_FILE]
    for job in jobs:
        model = opts.out / job.file_name(name, opts.quantizer)
        paths += [model, model.with_suffix(".json")]
    return paths


def check_options(opts: Options) -> None:
    if not Path(opts.model).is_file():  # the first thing a typo breaks: say so before anything else
        raise ExportError(f"{opts.model}: no such model file")
    if opts.quantizer not in QUANTIZERS:
        raise ExportError(f"unknown quantizer {opts.quantizer!r}: use converter or litert")
    calibrated = [m for m in opts.modes if FORMAT[m].needs_rep_data]
    if calibrated and opts.rep_data is None:
        raise ExportError(
            f"{calibrated[0]} needs a representative dataset: pass --rep-data (FER2013 CSV or image folders)"
        )
    if opts.rep_samples < 1:
        raise ExportError("--rep-samples must be at least 1")
    if opts.quantizer == "litert" and "int8" in opts.modes:
        if opts.io_type != "int8":
            raise ExportError("--quantizer litert writes int8 input and output only; use --io-type int8")
        if not litert_quantizer.available():
            litert_quantizer._load()  # raises QuantizerUnavailable with the reason


def load_split(
    path: Path, split: str, limit: int, seed: int, skip_bad: bool, what: str, calibration: bool
) -> Data:
    from fer_train.data import load

    data = load(path, split=split, skip_bad=skip_bad)
    images = check_images(data.images, f"{what} ({path}, split {split})")
    labels = data.labels
    if limit and limit < len(labels):
        # Calibration wants every class; an eval subset keeps the split's own class mix.
        rng = np.random.default_rng(seed)
        idx = (
            stratified_indices(labels, limit, seed)
            if calibration
            else np.sort(rng.permutation(len(labels))[:limit])
        )
        images, labels = images[idx], labels[idx]
    counts = np.bincount(labels, minlength=len(CLASSES))
    info = {
        "source": str(path),
        "split": data.split,
        "samples": int(len(labels)),
        "per_class": {c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
    }
    return Data(images, labels, info)


def run(opts: Options, log: Callable[[str], None] = print, progress=None) -> dict:
    """Export, verify, write and measure every planned variant; returns the report (also written)."""
    check_options(opts)
    keras_model = load_keras_model(opts.model)
    labels = list(CLASSES)
    check_model(keras_model, labels)
    if opts.flip_tta:
        from fer_train.models import with_flip_tta

        keras_model = with_flip_tta(keras_model)
    name = opts.name or keras_model.name
    jobs = plan(opts)
    for path in output_paths(opts, name, jobs):
        refuse_overwrite(path, opts.force)
    rep = Data()
    if opts.rep_data is not None:
        rep = load_split(
            opts.rep_data,
            opts.rep_split,
            opts.rep_samples,
            opts.seed,
            opts.skip_bad,
            "the representative dataset",
            True,
        )
        log(
            f"representative set: {rep.info['samples']} faces from {rep.info['split']}, "
            f"per class {rep.info['per_class']}"
        )
    evaluation = Data()
    if opts.eval_data is not None:
        evaluation = load_split(
            opts.eval_data,
            opts.eval_split,
            opts.eval_samples,
            opts.seed,
            opts.skip_bad,
            "the eval data",
            False,
        )
        log(f"eval data: {evaluation.info['samples']} faces from {evaluation.info['split']}")
    keras_eval = _keras_reference(keras_model, evaluation)
    report = _report_header(opts, name, keras_model, rep, evaluation, keras_eval)
    write_text(opts.out / LABELS_FILE, cards.labels_text(labels).decode())
    task = progress.add_task("exporting", total=len(jobs)) if progress else None
    for job in jobs:
        if progress:
            progress.update(task, description=f"exporting {job.label}")
        entry = _export_job(opts, job, name, keras_model, labels, rep, evaluation, keras_eval)
        report["variants"].append(entry)
        log(_entry_line(entry))
        if progress:
            progress.advance(task)
    report["quantizer_comparison"] = _compare_quantizers(report["variants"])
    write_json(opts.out / f"{REPORT_NAME}.json", report)
    write_text(opts.out / f"{REPORT_NAME}.md", to_markdown(report))
    return report


def _keras_reference(keras_model, evaluation: Data) -> dict | None:
    if evaluation.images is None:
        return None
    from fer_train.evaluate import classification_report, predict_probs

    probs = predict_probs(keras_model, evaluation.images)
    metrics = classification_report(evaluation.labels, probs.argmax(1))
    return {"probs": probs, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def _report_header(opts: Options, name: str, keras_model, rep: Data, evaluation: Data, keras_eval) -> dict:
    return {
        "model": str(opts.model),
        "name": name,
        "keras": {
            "parameters": int(keras_model.count_params()),
            "size_bytes": Path(opts.model).stat().st_size,
            "accuracy": None if keras_eval is None else keras_eval["accuracy"],
            "macro_f1": None if keras_eval is None else keras_eval["macro_f1"],
        },
        "representative_data": rep.info or None,
        "eval_data": evaluation.info or None,
        "quantizer": opts.quantizer,
        "io_type": opts.io_type,
        "flip_tta": opts.flip_tta,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": opts.threads},
        "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
        "variants": [],
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _export_job(
    opts, job: Job, name: str, keras_model, labels, rep: Data, evaluation: Data, keras_eval
) -> dict:
    path = opts.out / job.file_name(name, opts.quantizer)
    entry = {"variant": job.mode, "quantizer": job.quantizer, "mobile_rgb": job.mobile, "file": path.name}
    # The other quantizer's int8 model is exported for the report's comparison only.
    entry["comparison_only"] = job.mode == "int8" and job.quantizer != opts.quantizer
    tolerance = None
    if opts.tolerance is not None:
        base = FORMAT[job.mode].tolerance
        tolerance = Tolerance(mean_abs=opts.tolerance, agreement=base.agreement, margin=base.margin)
    verify = None
    if evaluation.images is not None:
        verify = evaluation.images[stratified_indices(evaluation.labels, VERIFY_SAMPLES, opts.seed)]
    source = {"keras_file": Path(opts.model).name, "quantizer": job.quantizer, "flip_tta": opts.flip_tta}
    try:
        converted = _litert_int8(keras_model, rep) if job.quantizer == "litert" else None
        exported = build_variant(
            keras_model,
            job.mode,
            rep.images,
            labels,
            name,
            job.io_type,
            verify,
            tolerance,
            source,
            job.mobile,
            converted,
        )
    except VerificationError as e:
        entry.update(status="failed", error=str(e), check=e.check.to_dict())
        exported = getattr(e, "exported", None)
        if exported is not None:
            entry.update(_measure(exported, opts, job, evaluation, keras_eval))
        return entry
    except (ConversionError, litert_quantizer.QuantizerUnavailable) as e:
        entry.update(status="failed", error=str(e))
        return entry
    except (ValueError, RuntimeError) as e:  # the interpreter refusing the result: this variant failed
        entry.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return entry
    entry.update(status="ok", size_bytes=len(exported.model), check=exported.check.to_dict())
    entry.update(_measure(exported, opts, job, evaluation, keras_eval))
    drop = entry.get("accuracy_drop")
    allowed = allowed_drop(job.mode, len(evaluation.labels) if evaluation.labels is not None else 1)
    if drop is not None and drop > allowed:
        # Agreement on sample faces can pass while the eval data shows the loss: the user's question.
        entry.update(
            status="failed",
            error=f"loses {drop * 100:.2f} points of accuracy on the eval data "
            f"(at most {allowed * 100:.1f} allowed)",
        )
        return entry
    write_bytes(path, exported.model)
    card = dict(exported.card, verification=entry["check"], evaluation=_card_metrics(entry))
    write_json(path.with_suffix(".json"), card)
    return entry


def allowed_drop(mode: str, faces: int) -> float:
    """The accuracy a variant may lose: its format's max_accuracy_drop (quantization that costs more is a
    failed export, not a smaller model), but at least two and a half faces' worth, so that a small
    eval set's noise alone does not fail an export."""
    return max(FORMAT[mode].max_accuracy_drop, 2.5 / max(1, faces))


def _litert_int8(keras_model, rep: Data) -> bytes:
    """The float model the LiteRT quantizer starts from, quantized with static_wi8_ai8."""
    return litert_quantizer.quantize_static_int8(convert(keras_model, "fp32"), rep.images)


def latency_ms(clf: Classifier, face: np.ndarray, runs: int = 200, warmup: int = 10, budget: float = 5):
    """Batch-1 `predict` time in milliseconds (median, p90, mean) over up to `runs` calls or `budget`
    seconds: a first look; `fer-bench latency` is the measurement."""
    for _ in range(warmup):
        clf.predict(face)
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 10 or time.perf_counter() < deadline):
        start = time.perf_counter()
        clf.predict(face)
        times.append((time.perf_counter() - start) * 1000.0)
    t = np.asarray(times)
    return {
        "median_ms": float(np.median(t)),
        "p90_ms": float(np.percentile(t, 90)),
        "mean_ms": float(t.mean()),
        "runs": len(times),
    }


def _measure(exported: Exported, opts: Options, job: Job, evaluation: Data, keras_eval) -> dict:
    from fer_train.evaluate import classification_report

    clf = Classifier(exported.model, threads=opts.threads)
    result = {
        "size_bytes": len(exported.model),
        "input_dtype": clf.input_dtype.name,
        "output_dtype": clf.output_dtype.name,
    }
    if job.mode == "int8":  # what the file computes in float32, read from it, not from the options
        result["float_ops"] = exported.card["source"].get("float_ops", {})
    sample = evaluation.images[0] if evaluation.images is not None else np.full((48, 48), 128, np.uint8)
    result["latency"] = latency_ms(clf, sample)
    if keras_eval is not None:
        probs = clf.predict(evaluation.images)
        metrics = classification_report(evaluation.labels, probs.argmax(1))
        result.update(
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            accuracy_drop=keras_eval["accuracy"] - metrics["accuracy"],
            macro_f1_drop=keras_eval["macro_f1"] - metrics["macro_f1"],
            agreement=float((probs.argmax(1) == keras_eval["probs"].argmax(1)).mean()),
            agreement_on="eval data",
        )
    else:
        result.update(agreement=exported.check.agreement, agreement_on="verification faces")
    return result


def _card_metrics(entry: dict) -> dict:
    keys = ("accuracy", "macro_f1", "accuracy_drop", "macro_f1_drop", "agreement", "agreement_on", "latency")
    return {k: entry[k] for k in keys if k in entry}


def _compare_quantizers(variants: list[dict]) -> dict | None:
    pair = {v["quantizer"]: v for v in variants if v["variant"] == "int8" and not v["mobile_rgb"]}
    if len(pair) < 2:
        return None
    keys = ("status", "size_bytes", "accuracy", "macro_f1", "agreement")
    table = {
        q: {k: v.get(k) for k in keys} | {"latency_ms": v.get("latency", {}).get("median_ms")}
        for q, v in pair.items()
    }
    # Verification status first, then accuracy on the eval data, then the smaller file.
    measured = {q: t for q, t in table.items() if t["size_bytes"] is not None}
    better = None
    if measured:
        better = max(
            measured,
            key=lambda q: (
                measured[q]["status"] == "ok",
                measured[q]["accuracy"] or 0.0,
                -measured[q]["size_bytes"],
            ),
        )
    return {"int8": table, "better": better, "default": DEFAULT_QUANTIZER}


def _entry_line(entry: dict) -> str:
    if entry["status"] != "ok":
        return f"{entry['file']}: FAILED - {entry['error']}"
    text = f"{entry['file']}: {entry['size_bytes'] / 1024:.0f} KiB"
    if "accuracy" in entry:
        text += (
            f", accuracy {entry['accuracy']:.2%} (drop {_drop(entry['accuracy_drop'])}), "
            f"agreement {entry['agreement']:.1%}"
        )
    return text + f", batch-1 latency {entry['latency']['median_ms']:.2f} ms"


# --- Markdown --------------------------------------------------------------------------------------


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
