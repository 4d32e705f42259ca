"""`fer-export`: turn a trained Keras model into verified, self-describing TFLite models.

    fer-export quantize --model runs/fer_res_l/model.keras --mode all --rep-data ../shared/fer2013 \\
        --eval-data ../shared/fer2013 --out runs/export_res_l
    fer-export inspect runs/export_res_l/fer_res_l_int8.tflite
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from fer_edge.cli_errors import fail, guarded, make_app, run_app
from fer_edge.runtime import MAX_THREADS
from fer_export.formats import FORMATS
from fer_export.quantize import Options as Defaults

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users

app = make_app(
    "Export a trained FER Keras model to TFLite (fp32, fp16, dynamic-range, int8) with labels, "
    "input spec and normalization embedded as TFLite metadata, check every model against Keras, "
    "and report what each variant costs in size, accuracy and latency."
)
console = Console(stderr=True)

DATA_HELP = "FER2013 as the Kaggle CSV (emotion,pixels,Usage) or a folder of <split>/<class>/*.jpg."


def _guarded(run):
    from fer_export import ConversionError, ExportError, ModelFileError
    from fer_export.litert_quantizer import QuantizerUnavailable
    from fer_train.data import DataError

    errors = (ExportError, DataError, ModelFileError, ConversionError, QuantizerUnavailable)
    interrupted = "interrupted; outputs written so far are complete, the rest were not written"
    return guarded(run, errors, interrupted)


@app.command(short_help="Keras to verified, self-describing TFLite variants.")
def quantize(
    model: Path = typer.Option(
        ..., "--model", help="The trained Keras model (.keras) taking 48x48x1 raw pixels."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the .tflite files, cards, labels.txt and the report."
    ),
    mode: str = typer.Option(
        "all",
        help=f"{', '.join(f.mode for f in FORMATS)}, a comma list of them, or all "
        "(`fer-export formats` shows what each is).",
    ),
    rep_data: Path = typer.Option(
        None, "--rep-data", help=f"Representative (calibration) data for int8. {DATA_HELP}"
    ),
    rep_split: str = typer.Option(Defaults.rep_split, help="Split of --rep-data to calibrate on."),
    rep_samples: int = typer.Option(
        Defaults.rep_samples, min=1, help="Calibration faces, drawn evenly across the seven classes."
    ),
    eval_data: Path = typer.Option(
        None, "--eval-data", help=f"Data for accuracy, macro-F1 and agreement in the report. {DATA_HELP}"
    ),
    eval_split: str = typer.Option(
        Defaults.eval_split, help="Split of --eval-data to evaluate on (test = PublicTest)."
    ),
    eval_samples: int = typer.Option(
        Defaults.eval_samples, min=0, help="Evaluate on a random subset of this size (0: the whole split)."
    ),
    name: str = typer.Option(
        None,
        help="Model name in file names and metadata: letters, digits, '_', '-', '.' (default: the Keras "
        "model's name).",
    ),
    io_type: str = typer.Option(
        Defaults.io_type,
        help="int8 variant's input and output type: int8 (pixel - 128), uint8 (the pixel) or float32.",
    ),
    quantizer: str = typer.Option(
        Defaults.quantizer,
        help="int8 path: converter (tf.lite.TFLiteConverter) or litert (litert-quantizer, static_wi8_ai8).",
    ),
    compare_quantizers: bool = typer.Option(
        False, help="Also export int8 with the other quantizer (file suffix _litert/_converter) and compare."
    ),
    mobile: bool = typer.Option(
        False,
        "--mobile",
        help="Also export RGB-input variants (*_rgb.tflite) for MediaPipe Tasks on Android/iOS.",
    ),
    flip_tta: bool = typer.Option(
        False,
        "--flip-tta",
        help="Bake horizontal-flip test-time augmentation into every variant: the model averages the "
        "face and its mirror image (more accurate, twice the work per face).",
    ),
    threads: int = typer.Option(
        Defaults.threads, min=1, max=MAX_THREADS, help="Interpreter threads for the latency measurement."
    ),
    tolerance: float = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Override every variant's tolerance on the mean |probability difference| to Keras.",
    ),
    seed: int = typer.Option(
        Defaults.seed, min=0, max=2**32 - 1, help="Seed for the representative and eval subsets."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Leave unreadable images and malformed rows out."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs in --out."),
):
    """Export the model in every requested variant, verify each against Keras, and write the export report.

    Writes <name>_<variant>.tflite with a <name>_<variant>.json card beside it, labels.txt and
    export_report.md/.json into --out. A variant that disagrees with the Keras model beyond its tolerance is
    not written, is marked FAILED in the report, and makes the command exit with status 1.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fer_export import quantize as q

    def run():
        from fer_train.backend import import_keras

        opts = q.Options(
            model=model,
            out=out,
            modes=q.parse_modes(mode),
            rep_data=rep_data,
            rep_split=rep_split,
            rep_samples=rep_samples,
            eval_data=eval_data,
            eval_split=eval_split,
            eval_samples=eval_samples,
            name=name,
            io_type=io_type,
            quantizer=quantizer,
            compare_quantizers=compare_quantizers,
            mobile=mobile,
            flip_tta=flip_tta,
            threads=threads,
            tolerance=tolerance,
            force=force,
            seed=seed,
            skip_bad=skip_bad,
        )
        q.check_options(opts)  # a typo is named at once, not after the seconds TensorFlow takes to load
        import_keras()  # TensorFlow without its C++ start-up chatter
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        # A bar on a terminal only: elsewhere (logs, pipes) Rich would leave an empty line behind.
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            return q.run(
                opts, log=lambda m: console.print(m, highlight=False, soft_wrap=True), progress=progress
            )

    report = _guarded(run)
    console.print(f"report: {out / (q.REPORT_NAME + '.md')}", highlight=False)
    _point_to_predict(out, report)
    failed = [v["file"] for v in report["variants"] if v["status"] != "ok" and not v.get("comparison_only")]
    compared = [v["file"] for v in report["variants"] if v["status"] != "ok" and v.get("comparison_only")]
    if compared:
        console.print(
            f"note: the comparison quantizer's {', '.join(compared)} failed verification and was not written",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        fail(f"{len(failed)} variant(s) failed and were not written: {', '.join(failed)} (see the report)", 1)


def _point_to_predict(out: Path, report: dict) -> None:
    """After export, the commands that run a written model: the same path users and benchmarks run."""
    variants = report["variants"]
    written = [v for v in variants if v["status"] == "ok" and not (v["comparison_only"] or v["mobile_rgb"])]
    if not written:
        return
    best = next((v for v in written if v["variant"] == "int8"), written[-1])
    path = out / best["file"]
    console.print(f"predict: fer-edge predict --model {path} IMAGE...", highlight=False, soft_wrap=True)
    console.print(f"live:    fer-edge run --model {path}", highlight=False, soft_wrap=True)
    console.print(f"measure: fer-bench latency --models {path}", highlight=False, soft_wrap=True)


@app.command(short_help="The variants quantize writes and what each is held to.")
def formats(as_json: bool = typer.Option(False, "--json", help="Print the table as JSON.")):
    """The variants quantize writes: what each is, whether it needs --rep-data, and what it is held to.

    verify: the most mean |probability difference| to Keras on sample faces, and the least top-1
    agreement where Keras is clear. max drop: the most accuracy it may lose on --eval-data and still be
    written.
    """
    from fer_export.formats import export_formats

    rows = export_formats()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'mode':<8} {'rep-data':<8} {'verify':<16} {'max drop':<9} quantization")
    for r in rows:
        verify = f"{r['verify_mean_abs']:g} / {100 * r['verify_agreement']:.0f}%"
        drop = f"{r['max_accuracy_drop_pp']:g} pt"
        rep = "yes" if r["rep_data"] else "no"
        print(f"{r['mode']:<8} {rep:<8} {verify:<16} {drop:<9} {r['quantization']}")


@app.command(short_help="What a .tflite says about itself.")
def inspect(
    model: Path = typer.Argument(..., metavar="MODEL", help="A .tflite file."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as one JSON object."),
):
    """Show what a .tflite says about itself: model card, TFLite metadata, tensors and associated files."""
    from fer_export.inspect_model import describe, to_text

    def show() -> None:
        info = describe(model)
        print(json.dumps(info, indent=2) if as_json else to_text(info), flush=True)

    _guarded(show)


def main() -> None:
    try:
        run_app(app, "fer-export")
    except BrokenPipeError:  # `fer-export inspect ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
