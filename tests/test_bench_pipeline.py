"""fer-bench pipeline on a real video through fer-edge's detector (the shared BlazeFace model),
crops, classifier and overlay: stage times that add up, and the faces the clip holds."""

from __future__ import annotations

import os

import pytest
from bench_helpers import read_json, run_cli, tiny_models, write_clip
from test_bench_latency import error_line

from fer_bench.pipeline import STAGES

FRAMES = 6


@pytest.fixture(scope="module")
def clip(shared, tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", shared, frames=FRAMES + 2)


def detector_args(shared) -> list[str]:
    return [
        "--detector",
        "blazeface",
        "--detector-model",
        str(shared / "models" / "blaze_face_short_range.tflite"),
    ]


def test_pipeline_times_every_stage(clip, shared, tmp_path):
    models = tiny_models()
    proc = run_cli(
        "pipeline",
        "--source",
        str(clip),
        "-m",
        str(models["int8"]),
        *detector_args(shared),
        "--max-frames",
        str(FRAMES),
        "--warmup",
        "2",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = read_json(tmp_path / "pipeline.json")
    assert doc["stages"] == list(STAGES)
    (r,) = doc["results"]
    assert r["frames"] == FRAMES and r["detector"] == "BlazeFaceDetector"
    assert r["faces_per_frame"] == pytest.approx(2.0)  # the clip shows two faces in every frame
    stage_means = sum(r["stages_ms"][s]["mean"] for s in STAGES)
    assert r["frame_ms"]["mean"] == pytest.approx(stage_means, rel=1e-6)
    for s in STAGES:
        m = r["stages_ms"][s]
        assert 0 <= m["min"] <= m["p50"] <= m["p90"] <= m["max"]
    assert r["fps"] > 0 and r["detections"] == FRAMES
    rep = run_cli("report", "--out", str(tmp_path))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "report.md").read_text()
    assert "## Pipeline" in md and "pipeline.png" in md and (tmp_path / "pipeline.png").is_file()


def test_detect_every_runs_the_live_loops_tracking(clip, shared, tmp_path):
    """With --detect-every 3 the detector runs on every third frame and fer-edge run's tracker carries
    the two faces through the frames in between."""
    proc = run_cli(
        "pipeline",
        "--source",
        str(clip),
        "-m",
        str(tiny_models()["int8"]),
        *detector_args(shared),
        "--max-frames",
        str(FRAMES),
        "--warmup",
        "2",
        "--detect-every",
        "3",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = read_json(tmp_path / "pipeline.json")
    (r,) = doc["results"]
    assert doc["settings"]["detect_every"] == 3
    assert r["detections"] == 2  # frames 3 and 6 of the timed frames 2-7
    assert r["faces_per_frame"] == pytest.approx(2.0)


def test_bad_sources_end_in_one_error_line(clip, shared, tmp_path):
    models = tiny_models()
    proc = run_cli(
        "pipeline",
        "--source",
        str(tmp_path / "none.mp4"),
        "-m",
        str(models["int8"]),
        *detector_args(shared),
        "--out",
        str(tmp_path),
    )
    assert "none.mp4" in error_line(proc)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 500)
    proc = run_cli(
        "pipeline",
        "--source",
        str(junk),
        "-m",
        str(models["int8"]),
        *detector_args(shared),
        "--out",
        str(tmp_path),
    )
    assert "junk.mp4" in error_line(proc)
    proc = run_cli(
        "pipeline",
        "--source",
        str(clip),
        "-m",
        str(models["int8"]),
        *detector_args(shared),
        "--warmup",
        "50",
        "--out",
        str(tmp_path),
    )
    assert "warm-up" in error_line(proc)
    os.mkfifo(tmp_path / "pipe")  # no writer: the option the error names is there
    proc = run_cli(
        "pipeline", "--source", str(tmp_path / "pipe"), "-m", str(models["int8"]), "--open-timeout", "0.5"
    )
    assert "no answer within 0.5 s; --open-timeout sets how long to wait" in error_line(proc)
    assert not (tmp_path / "pipeline.json").exists()


def test_a_missing_source_is_refused_before_the_detector_starts(shared, tmp_path):
    """MediaPipe's detector, left open when the run ends in an error, prints a traceback at exit."""
    pytest.importorskip("mediapipe")
    proc = run_cli(
        "pipeline",
        "--source",
        str(tmp_path / "none.mp4"),
        "-m",
        str(tiny_models()["int8"]),
        "--detector",
        "mediapipe",
        "--detector-model",
        str(shared / "models" / "blaze_face_short_range.tflite"),
        "--out",
        str(tmp_path),
    )
    assert "none.mp4" in error_line(proc)
    assert proc.stderr.strip().splitlines() == [error_line(proc)]


def test_clip_writes_the_same_video_every_time(shared, tmp_path):
    import cv2
    import numpy as np

    runs = []
    for name in ("a.avi", "b.avi"):
        proc = run_cli(
            "clip", "--data", str(shared / "fer2013"), "--out", str(tmp_path / name), "--frames", "3"
        )
        assert proc.returncode == 0, proc.stderr
        video = cv2.VideoCapture(str(tmp_path / name))
        frames = [video.read()[1] for _ in range(4)]
        video.release()
        assert [f.shape for f in frames[:3]] == [(480, 640, 3)] * 3 and frames[3] is None
        runs.append(frames[:3])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    # Another suffix would give one JPEG (OpenCV's image writer), not a clip: refused, nothing written.
    proc = run_cli("clip", "--data", str(shared / "fer2013"), "--out", str(tmp_path / "c.jpg"))
    assert ".avi" in error_line(proc) and not (tmp_path / "c.jpg").exists()
    # A mistyped frame count (300000000) would fill the disk for days: at most an hour of frames.
    proc = run_cli(
        "clip", "--data", str(shared / "fer2013"), "--out", str(tmp_path / "d.avi"), "--frames", "300000000"
    )
    assert "less than or equal to 54000" in error_line(proc) and not (tmp_path / "d.avi").exists()


def test_a_clip_a_full_disk_cuts_short_is_reported_and_not_kept(shared, tmp_path):
    import subprocess
    import sys

    from conftest import small_disk

    out = tmp_path / "clip.avi"
    code = "from fer_bench.cli import main; main()"
    command = [sys.executable, "-c", code, "clip", "--data", str(shared / "fer2013"), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=small_disk(64_000))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: cannot write (only ") and last.endswith("; not kept"), last
    assert list(tmp_path.iterdir()) == []
