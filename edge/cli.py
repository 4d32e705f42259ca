"""`fer-edge`: run FER models on images, cameras and streams, without TensorFlow.

Every problem with the user's input ends in one `error:` line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from fer_edge import cli_errors
from fer_edge.runtime import MAX_THREADS

app = cli_errors.make_app(
    "Facial emotion recognition on the edge: detect faces, classify seven emotions with a FER .tflite "
    "(labels and input spec are read from the model), on images, video files, cameras and RTSP streams."
)
models_app = cli_errors.make_app(
    "Model files: the shipped emotion models (list), the face detector's (fetch, path).", version=False
)
app.add_typer(models_app, name="models", short_help="The shipped models; the face detector's model file.")

SOURCE_HELP = (
    "Camera index or device (/dev/video0), picamera (a Pi camera module, through Picamera2), video file "
    "or named pipe, rtsp:// or http:// URL, image, or folder of images."
)
MODEL_HELP = (
    "FER .tflite to run, or a shipped model's name: default (the most accurate), small (faster and more "
    "accurate than the fer package's model), nano (the fastest), fp16, nano-fp16, app, small-app, nano-app."
)
DETECTOR_HELP = (
    "Face detector: mediapipe (MediaPipe Tasks), blazeface (the same model through LiteRT, decoded here), "
    "haar (OpenCV's cascade, OpenCV 4 only), or auto (mediapipe where it runs, else blazeface, else haar)."
)
DETECTOR_MODEL_HELP = (
    "BlazeFace short-range .tflite (default: $FER_DETECTOR_MODEL, then the cache of `models fetch`, "
    "then the copy shipped in the package)."
)


def guarded(action: Callable[[], int | None]) -> None:
    """Run a command; its return value is the exit status."""
    code = cli_errors.guarded(action)
    if code:
        raise typer.Exit(code)


def make_recognizer(
    model, detector, detector_model, threads, margin=0.1, max_faces=None, min_face=16, labels=None
):
    from fer_edge.recognizer import EmotionRecognizer

    fer = EmotionRecognizer(model, detector, detector_model, threads, margin, max_faces, min_face, labels)
    if fer.classifier.softmax:
        typer.echo(f"note: {fer.classifier.path} gives logits; scores are their softmax", err=True)
    if fer.detector is not None:
        typer.echo(f"detector: {fer.detector.name} ({fer.detector_reason})", err=True)
    return fer


@app.command(short_help="Emotions of the faces in images, or of face crops.")
def predict(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="IMAGES",
        help="Image files and folders (searched recursively); - reads one image from stdin.",
    ),
    crops: bool = typer.Option(
        False, "--crops", help="Each image is already a face crop (as FER2013's are): no detection."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    labels: Path | None = typer.Option(
        None, "--labels", help="Labels file (one per line) for a model that carries none."
    ),
    detector: str = typer.Option("auto", "--detector", "-d", help=DETECTOR_HELP),
    detector_model: Path | None = typer.Option(None, "--detector-model", help=DETECTOR_MODEL_HELP),
    threads: int = typer.Option(1, "--threads", "-t", min=1, max=MAX_THREADS, help="Interpreter threads."),
    max_faces: int | None = typer.Option(
        None, "--max-faces", min=1, help="Keep only the N largest faces of an image."
    ),
    min_face: int = typer.Option(16, "--min-face", min=1, help="Ignore faces smaller than this many pixels."),
    margin: float = typer.Option(
        0.1, "--margin", min=0.0, max=1.0, help="Crop margin around a face box, per side."
    ),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        min=1,
        help="Refuse images larger than this (default 50,000,000; $FER_MAX_PIXELS).",
    ),
    save: Path | None = typer.Option(
        None,
        "--save",
        help="Folder for a copy of each image with its faces drawn (same names; JPEG stays JPEG, "
        "other formats become PNG).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite copies an earlier --save wrote."),
) -> None:
    """Emotions of the faces in images: detection + classification, or classification of crops.

    Prints `path<TAB>label<TAB>score` per crop, or the faces found per image; with --json one object
    per image: {"path", "label", "score", "scores"} for crops, {"path", "size", "faces": [{"box":
    [x, y, w, h], "label", "score", "scores"}]} otherwise. Unreadable images are skipped with a warning
    and make the exit status 2.
    """

    def action() -> int:
        from fer_edge.images import named_images, set_max_pixels
        from fer_edge.predict import Saves, run_predict

        set_max_pixels(max_pixels)  # every call: an earlier call's limit does not carry over
        named = named_images(inputs)  # before loading anything: a typo in a path is the commonest mistake
        if save is not None and crops:
            cli_errors.fail("--save draws the faces found in images; with --crops nothing is found")
        saves = Saves.plan(named, save, force) if save is not None else None
        fer = make_recognizer(
            model, None if crops else detector, detector_model, threads, margin, max_faces, min_face, labels
        )
        try:
            paths = [path for path, _ in named]
            several = len(paths) > 1 or any(Path(i).is_dir() for i in inputs)  # a folder: however many
            done, failed = run_predict(fer, paths, crops, as_json, saves=saves, summary=several)
        finally:
            fer.close()
        if failed:
            typer.echo(f"error: {failed} of {done + failed} images could not be read", err=True)
            return 2
        return 0

    guarded(action)


@app.command(short_help="Live recognition: camera, video, stream, image or folder.")
def run(
    source: str = typer.Option(
        "0",
        "--source",
        "-s",
        help=SOURCE_HELP,
    ),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    labels: Path | None = typer.Option(None, "--labels", help="Labels file for a model that carries none."),
    detector: str = typer.Option("auto", "--detector", "-d", help=DETECTOR_HELP),
    detector_model: Path | None = typer.Option(None, "--detector-model", help=DETECTOR_MODEL_HELP),
    threads: int = typer.Option(
        1, "--threads", "-t", min=1, max=MAX_THREADS, help="Interpreter threads (classifier and BlazeFace)."
    ),
    detect_every: int = typer.Option(
        1, "--detect-every", min=1, help="Detect faces every N frames; reuse the tracked boxes in between."
    ),
    max_faces: int | None = typer.Option(
        None, "--max-faces", min=1, help="Classify only the N largest faces of a frame."
    ),
    min_face: int = typer.Option(16, "--min-face", min=1, help="Ignore faces smaller than this many pixels."),
    margin: float = typer.Option(
        0.1, "--margin", min=0.0, max=1.0, help="Crop margin around a face box, per side."
    ),
    smoothing: float = typer.Option(
        0.6, "--smoothing", min=0.0, max=0.95, help="Weight of a face's past scores (0 = none)."
    ),
    save: Path | None = typer.Option(
        None, "--save", help="Write the annotated video here (.mp4, .avi or .mkv)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON line per frame on stdout: frame, time, faces."
    ),
    json_file: Path | None = typer.Option(
        None, "--json-file", help="Write the JSON lines to this file instead of stdout ('-': stdout)."
    ),
    serve: str | None = typer.Option(
        None,
        "--serve",
        help="Serve an MJPEG preview page at HOST:PORT, e.g. 127.0.0.1:8080 ([::1]:8080 for IPv6).",
    ),
    show: bool | None = typer.Option(
        None,
        "--show/--no-show",
        " /--headless",
        help="Show a window (default: when a display exists); --headless: never.",
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
    reconnect: int = typer.Option(
        5,
        "--reconnect",
        min=0,
        help="Reopen a dropped camera or stream this many times (backoff 0.5 s doubling).",
    ),
    open_timeout: float = typer.Option(
        10.0,
        "--open-timeout",
        min=0.1,
        help="Seconds to wait for a camera or stream to answer, or a named pipe's writer, when opening it.",
    ),
    realtime: bool = typer.Option(
        False,
        "--realtime",
        help="Play a video file at its own frame rate (to watch it with --show or --serve), not as fast "
        "as it decodes.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing --save and --json-file outputs."),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        min=1,
        help="Refuse images and video frames larger than this (default 50,000,000; $FER_MAX_PIXELS).",
    ),
) -> None:
    """Live emotion recognition on a camera, video, stream, image or folder of images.

    A capture thread always hands over the newest frame of a live source (no growing lag); files are
    read frame by frame. Faces are tracked and their scores smoothed; the overlay shows box, label,
    confidence and FPS. Ctrl-C (or the end of the source) prints a summary: frames, faces, mean FPS and
    per-stage latencies.
    """

    def action() -> int:
        from fer_edge.images import set_max_pixels
        from fer_edge.live import LiveOptions, check_outputs, run_live

        set_max_pixels(max_pixels)  # every call: an earlier call's limit does not carry over
        to_stdout = as_json or str(json_file) == "-"  # '-' is stdout, as for other Unix tools
        file = None if str(json_file) == "-" else json_file
        options = LiveOptions(
            source=source,
            detect_every=detect_every,
            smoothing=smoothing,
            save=save,
            json_stdout=to_stdout and file is None,
            json_file=file,
            serve=serve,
            show=show,
            max_frames=max_frames,
            reconnect=reconnect,
            open_timeout=open_timeout,
            realtime=realtime,
            force=force,
        )
        check_outputs(options)  # before the model loads: a typo in an output path is found at once
        fer = make_recognizer(model, detector, detector_model, threads, margin, max_faces, min_face, labels)
        try:
            return run_live(fer, options)
        finally:
            fer.close()

    guarded(action)


@app.command(short_help="What a FER .tflite says about itself.")
def info(
    model: Path | None = typer.Argument(None, metavar="MODEL", help=MODEL_HELP),
    model_option: Path | None = typer.Option(
        None, "--model", "-m", help="The same as MODEL, named as predict and run name it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
) -> None:
    """What a FER .tflite says about itself: name, variant, labels, input and runtime."""

    def action() -> None:
        import json

        from fer_edge.classifier import Classifier, resolve_model
        from fer_edge.errors import EdgeError, MissingLabels
        from fer_edge.runtime import runtime_name

        if model is not None and model_option is not None:
            raise EdgeError("give the model once: as MODEL or as --model, not both")
        try:
            described = Classifier(resolve_model(model or model_option)).describe()
        except MissingLabels as err:  # info has no --labels: say who takes it
            raise EdgeError(f"{err.why}; predict and run take --labels FILE") from None
        described["runtime"] = runtime_name()
        if as_json:
            typer.echo(json.dumps(described))
        else:
            typer.echo(_describe_for_people(described))

    guarded(action)


def _describe_for_people(described: dict) -> str:
    """`info`'s lines: the JSON's fields in words (`input: 48x48x1 int8`), not Python reprs."""
    shape, out = described["input"], described["output"]
    scores = "logits; the runtime applies softmax" if out["softmax_applied"] else "probabilities"
    lines = {
        **described,
        "labels": ", ".join(described["labels"]),
        "input": f"{shape['size']}x{shape['size']}x{shape['channels']} {shape['dtype']}",
        "output": f"{out['dtype']} {scores}",
    }
    return "\n".join(f"{key}: {value}" for key, value in lines.items())


@models_app.command("list", short_help="The shipped emotion models: file, size, accuracy.")
def models_list(as_json: bool = typer.Option(False, "--json", help="One JSON object per model.")) -> None:
    """The shipped emotion models by the name --model takes: file, size, input, and accuracy and
    macro-F1 on FER2013 PublicTest as measured at export."""

    def action() -> None:
        import json

        from fer_models import DEFAULT_MODEL, describe_shipped

        rows = describe_shipped()
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        typer.echo(f"{'name':<10} {'file':<26} {'KiB':>5}  {'input':<13}{'accuracy':>8} {'F1':>6}  TTA")
        for r in rows:
            accuracy = f"{r['accuracy']:.2%}" if r["accuracy"] is not None else "-"
            f1 = f"{r['macro_f1']:.3f}" if r["macro_f1"] is not None else "-"
            tta = "flip" if r["flip_tta"] else ""
            typer.echo(
                f"{r['name']:<10} {r['file']:<26} {r['kib']:>5}  {r['input']:<13}{accuracy:>8} {f1:>6}  {tta}"
            )
        typer.echo(f"in {DEFAULT_MODEL.parent}; accuracy and macro-F1 on FER2013 PublicTest (3,589 faces)")

    guarded(action)


@models_app.command("fetch", short_help="Download the BlazeFace model (SHA-256 checked).")
def models_fetch(
    dest: Path | None = typer.Option(None, "--dest", help="Folder to put it in (default: the cache folder)."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Download from this mirror: https://, http:// or file:// (SHA-256 checked all the same).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Download again even if a good copy is there (another file is always kept)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=3600, help="Network timeout in seconds."),
) -> None:
    """Download the BlazeFace short-range model from its official URL and check its pinned SHA-256.

    Not needed to run: the same network ships inside the package. This is the Tasks copy, with the
    metadata that MediaPipe's own tools read.
    """

    def action() -> None:
        from fer_edge.model_files import BLAZE_FACE, fetch

        path, downloaded = fetch(BLAZE_FACE, dest, url, force, timeout)
        typer.echo(f"{'downloaded' if downloaded else 'already there'}: {path}")

    guarded(action)


@models_app.command("path", short_help="The face detector model that would be used.")
def models_path(
    detector_model: Path | None = typer.Option(None, "--detector-model", help=DETECTOR_MODEL_HELP),
) -> None:
    """Print the face detector model that would be used, or where `models fetch` would put it."""

    def action() -> int:
        from fer_edge.model_files import cache_dir, find_detector_model

        found = find_detector_model(detector_model)
        if found is None:
            typer.echo(
                f"error: no face detector model; `fer-edge models fetch` puts it in {cache_dir()}", err=True
            )
            return 2
        typer.echo(str(found))
        return 0

    guarded(action)


def main() -> None:
    cli_errors.run_app(app, "fer-edge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
