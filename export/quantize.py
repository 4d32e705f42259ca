"""`fer-export quantize` as a function: export every requested variant and measure what each costs.

The plan comes from the options and the variant table (`formats.FORMAT`); the faces from
`representative`. For each variant: convert (converter or LiteRT quantizer), embed metadata and
verify against Keras on sample faces (`variant.build_variant`), write it with a JSON card beside it,
then measure it on the eval data in the LiteRT interpreter (`measure`). The report: `report`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fer_edge.errors import not_a_model_file
from fer_export import card as cards
from fer_export import litert_quantizer, measure
from fer_export import report as report_md
from fer_export.convert import ConversionError, convert
from fer_export.formats import FORMAT, IO_TYPES, MODES, TOLERANCES
from fer_export.model_file import LABELS_FILE
from fer_export.representative import Data, load_split, stratified_indices
from fer_export.variant import (
    VERIFY_SAMPLES,
    ExportError,
    build_variant,
    check_model,
    load_keras_model,
)
from fer_export.verify import Tolerance, VerificationError
from fer_train.files import only_one_writer, refuse_overwrite, write_bytes, write_json, write_text
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


def checked_name(name: str, given: bool) -> str:
    """The name in the output files' names: a plain stem, so that every file lands in --out."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        return name
    shown = name if len(name) <= 40 else name[:40] + "..."
    where = f"--name {shown!r}" if given else f"the model's name {shown!r} (pass --name)"
    if len(name) > 100:
        raise ExportError(f"{where}: {len(name)} characters; at most 100, as the start of a file name")
    raise ExportError(f"{where}: start with a letter or digit, then letters, digits, '_', '-' and '.' only")


def check_options(opts: Options) -> None:
    if why := not_a_model_file(Path(opts.model), ".keras file"):  # what a typo breaks: said first
        raise ExportError(why)
    if Path(opts.model).suffix.lower() not in (".keras", ".h5"):  # an exported .tflite, given by mistake
        raise ExportError(
            f"{opts.model}: not a Keras model file (expected .keras or .h5, a run's model.keras)"
        )
    if opts.name:
        checked_name(opts.name, given=True)
    if opts.quantizer not in QUANTIZERS:
        raise ExportError(f"unknown quantizer {opts.quantizer!r}: use converter or litert")
    if opts.io_type not in IO_TYPES:  # an option, said before the model loads, not a failed variant after
        raise ExportError(f"unknown --io-type {opts.io_type!r}: use one of {', '.join(IO_TYPES)}")
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


def run(opts: Options, log: Callable[[str], None] = print, progress=None) -> dict:
    """Export, verify, write and measure every planned variant; returns the report (also written)."""
    check_options(opts)
    keras_model = load_keras_model(opts.model)
    labels = list(CLASSES)
    check_model(keras_model, labels, str(opts.model))
    if opts.flip_tta:
        from fer_train.models import with_flip_tta

        keras_model = with_flip_tta(keras_model)
    name = checked_name(opts.name or keras_model.name, given=bool(opts.name))
    jobs = plan(opts)
    busy = ExportError(
        f"{opts.out}: another fer-export is writing here; let it finish or choose another --out"
    )
    with only_one_writer(opts.out, busy):  # from the overwrite check to the report
        for path in output_paths(opts, name, jobs):
            refuse_overwrite(path, opts.force)
        rep, evaluation = _load_data(opts, log)
        return _export_all(opts, name, jobs, keras_model, labels, rep, evaluation, log, progress)


def _load_data(opts: Options, log: Callable[[str], None]) -> tuple[Data, Data]:
    """The representative (calibration) faces and the eval faces; empty where not asked for."""
    rep = evaluation = Data()
    if opts.rep_data is not None:
        what = "the representative dataset"
        args = (opts.rep_data, opts.rep_split, opts.rep_samples, opts.seed, opts.skip_bad, what)
        rep = load_split(*args, calibration=True)
        info = rep.info
        per_class = info["per_class"]
        log(f"representative set: {info['samples']} faces from {info['split']}, per class {per_class}")
    if opts.eval_data is not None:
        what = "the eval data"
        args = (opts.eval_data, opts.eval_split, opts.eval_samples, opts.seed, opts.skip_bad, what)
        evaluation = load_split(*args, calibration=False)
        log(f"eval data: {evaluation.info['samples']} faces from {evaluation.info['split']}")
    return rep, evaluation


def _export_all(opts, name, jobs, keras_model, labels, rep, evaluation, log, progress) -> dict:
    """Export, verify and measure each variant in turn, then write the report."""
    keras_eval = measure.keras_reference(keras_model, evaluation)
    report = _report_header(opts, name, keras_model, rep, evaluation, keras_eval)
    task = progress.add_task("exporting", total=len(jobs)) if progress else None
    for job in jobs:
        if progress:
            progress.update(task, description=f"exporting {job.label}")
        entry = _export_job(opts, job, name, keras_model, labels, rep, evaluation, keras_eval)
        report["variants"].append(entry)
        log(report_md.entry_line(entry))
        if progress:
            progress.advance(task)
    report["quantizer_comparison"] = measure.compare_quantizers(report["variants"], DEFAULT_QUANTIZER)
    # With the report, once every variant is written: an export that fails early leaves no stray file.
    write_text(opts.out / LABELS_FILE, cards.labels_text(labels).decode())
    write_json(opts.out / f"{REPORT_NAME}.json", report)
    write_text(opts.out / f"{REPORT_NAME}.md", report_md.to_markdown(report))
    return report


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
        "machine": {"cpu": measure.cpu_name(), "cores": os.cpu_count(), "threads": opts.threads},
        "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
        "variants": [],
    }


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
            entry.update(measure.measure(exported, job.mode, opts.threads, evaluation, keras_eval))
        return entry
    except (ConversionError, litert_quantizer.QuantizerUnavailable) as e:
        entry.update(status="failed", error=str(e))
        return entry
    except (ValueError, RuntimeError) as e:  # the interpreter refusing the result: this variant failed
        entry.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return entry
    entry.update(status="ok", size_bytes=len(exported.model), check=exported.check.to_dict())
    entry.update(measure.measure(exported, job.mode, opts.threads, evaluation, keras_eval))
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
    card = dict(exported.card, verification=entry["check"], evaluation=measure.card_metrics(entry))
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
