"""Face detectors on FER2013 faces pasted on a textured canvas, and the detector model's lookup and fetch."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from edge_helpers import convert, iou, paste_faces, shared_faces, textured_canvas

from fer_edge.blazeface import BlazeFaceDetector, ssd_anchors, weighted_nms
from fer_edge.detectors import haar_unavailable, make_detector, mediapipe_unavailable
from fer_edge.errors import DetectorError, EdgeError
from fer_edge.model_files import BLAZE_FACE, bundled_detector_model, cache_dir, fetch, find_detector_model

# Three faces of different sizes, far enough apart: (x, y, side) on a 640x480 canvas.
PLACES = [(20, 40, 220), (300, 20, 180), (400, 250, 200)]


@pytest.fixture(scope="module")
def blaze_model(shared) -> Path:
    return shared / "models" / "blaze_face_short_range.tflite"


@pytest.fixture(scope="module")
def frames(shared):
    """Frames of three pasted faces each, faces taken in turn from every class."""
    faces = [f for _, f in shared_faces(shared, per_class=3)]
    out = []
    for i in range(0, len(faces) - 2, 3):
        out.append(paste_faces(textured_canvas(seed=i), faces[i : i + 3], PLACES))
    return out


def _score(boxes_per_frame) -> tuple[float, float]:
    """(recall, precision) of detections against the pasted faces, a hit being IoU > 0.4."""
    truth = [(x, y, s, s) for x, y, s in PLACES]
    found = sum(any(iou(b.as_list(), t) > 0.4 for b in boxes) for boxes in boxes_per_frame for t in truth)
    correct = sum(any(iou(b.as_list(), t) > 0.4 for t in truth) for boxes in boxes_per_frame for b in boxes)
    total = sum(len(boxes) for boxes in boxes_per_frame)
    return found / (len(truth) * len(boxes_per_frame)), correct / max(total, 1)


def test_anchors_are_mediapipes_896():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[512:518], anchors[512])
    assert anchors.min() > 0 and anchors.max() < 1


def test_weighted_nms_merges_overlaps_by_score():
    corners = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    kept = weighted_nms(corners, np.array([0.9, 0.3, 0.8], dtype=np.float32))
    assert len(kept) == 2
    (box, score), (other, _) = kept
    assert score == pytest.approx(0.9) and 0 < box[0] < 1 and np.allclose(other, [50, 50, 60, 60])


def test_blazeface_finds_pasted_faces(blaze_model, frames):
    detector = BlazeFaceDetector(blaze_model)
    recall, precision = _score([detector.detect(f) for f in frames])
    assert precision >= 0.9
    assert recall >= 0.6
    assert detector.detect(textured_canvas(seed=99)) == []
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_blazeface_boxes_follow_the_frame_shape(blaze_model, shared):
    """Letterboxing is undone: the same face found in a tall and a wide frame at its place in each."""
    face = shared_faces(shared, per_class=1)[3][1]
    detector = BlazeFaceDetector(blaze_model)
    for h, w, place in ((480, 640, (300, 120, 220)), (640, 360, (60, 300, 220))):
        frame = paste_faces(textured_canvas(h, w, seed=3), [face], [place])
        boxes = detector.detect(frame)
        assert boxes and iou(boxes[0].as_list(), (place[0], place[1], place[2], place[2])) > 0.4
        rgb = detector.detect(frame[..., ::-1].copy(), rgb=True)
        assert iou(rgb[0].as_list(), boxes[0].as_list()) > 0.95


def test_blazeface_rejects_a_model_that_is_not_blazeface(tmp_path, shared):
    with pytest.raises(DetectorError):
        BlazeFaceDetector(tmp_path / "missing.tflite")
    # The face landmarker bundle is a zip of other models, not BlazeFace.
    with pytest.raises(DetectorError):
        BlazeFaceDetector(shared / "models" / "face_landmarker.task")


@pytest.mark.skipif(
    mediapipe_unavailable() is not None, reason=f"mediapipe cannot run: {mediapipe_unavailable()}"
)
def test_a_recognizer_left_open_exits_without_mediapipes_traceback():
    # The embedding API used without `with` or close(): MediaPipe's own finalizer, run while the
    # interpreter tears down, printed "Exception ignored ... TypeError" at exit.
    code = "from fer_edge import EmotionRecognizer; EmotionRecognizer(detector='mediapipe'); print('made')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "made", done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


@pytest.mark.skipif(
    mediapipe_unavailable() is not None, reason=f"mediapipe cannot run: {mediapipe_unavailable()}"
)
def test_mediapipe_and_our_blazeface_agree(blaze_model, frames):
    from fer_edge.detectors import MediaPipeDetector

    ours = BlazeFaceDetector(blaze_model)
    theirs = MediaPipeDetector(blaze_model)
    try:
        overlaps = []
        for frame in frames:
            a, b = ours.detect(frame), theirs.detect(frame)
            # Near the 0.5 threshold the two may differ by a face; confident faces must be in both.
            for x, others in ((x, b) for x in a if x.score >= 0.6):
                overlaps.append(max([iou(x.as_list(), y.as_list()) for y in others] + [0.0]))
            for y in (y for y in b if y.score >= 0.6):
                assert max(iou(y.as_list(), x.as_list()) for x in a) > 0.5
        recall, precision = _score([theirs.detect(f) for f in frames])
    finally:
        theirs.close()
    assert overlaps and statistics.median(overlaps) > 0.9
    assert precision >= 0.9 and recall >= 0.6


@pytest.mark.skipif(
    mediapipe_unavailable() is not None, reason=f"mediapipe cannot run: {mediapipe_unavailable()}"
)
def test_mediapipe_names_a_model_file_it_cannot_start_on(tmp_path):
    """A wrong --detector-model (an emotion classifier, a damaged file) is named in MediaPipe's error."""
    from fer_edge.detectors import MediaPipeDetector

    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match=f"mediapipe detector: {damaged}: cannot start .*Flatbuffer"):
        MediaPipeDetector(damaged)


@pytest.mark.skipif(haar_unavailable() is not None, reason=f"haar cannot run: {haar_unavailable()}")
def test_haar_finds_pasted_faces(frames):
    from fer_edge.detectors import HaarDetector

    recall, _ = _score([HaarDetector().detect(f) for f in frames])
    assert recall >= 0.5


def test_auto_says_what_it_chose_and_why(blaze_model):
    choice = make_detector("auto", blaze_model)
    try:
        assert choice.detector.name in ("mediapipe", "blazeface")
        assert choice.reason
        if mediapipe_unavailable() is not None:
            assert choice.detector.name == "blazeface" and mediapipe_unavailable() in choice.reason
    finally:
        choice.detector.close()
    assert make_detector("blazeface", blaze_model).detector.name == "blazeface"


def test_the_bundled_model_is_the_tasks_blazeface_network(blaze_model):
    """The copy shipped in the package gives the downloaded Tasks model's outputs, bit for bit."""
    from fer_edge.runtime import load_interpreter

    bundled = bundled_detector_model()
    assert bundled is not None and bundled.read_bytes() != blaze_model.read_bytes()  # no metadata
    assert (bundled.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    outputs = []
    for path in (bundled, blaze_model):
        interpreter = load_interpreter(path, threads=1)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append([interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()])
    assert [o.shape for o in outputs[0]] == [(1, 896, 16), (1, 896, 1)]
    for ours, theirs in zip(*outputs, strict=True):
        assert np.array_equal(ours, theirs)


def test_offline_with_an_empty_cache_the_bundled_blazeface_is_used(tmp_path, monkeypatch, frames):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_DETECTOR_MODEL", raising=False)
    for name in ("auto", "blazeface") + (("mediapipe",) if mediapipe_unavailable() is None else ()):
        choice = make_detector(name)
        try:
            assert choice.detector.name in ("mediapipe", "blazeface")  # never the Haar fallback
            recall, precision = _score([choice.detector.detect(f) for f in frames])
            assert precision >= 0.9 and recall >= 0.6
        finally:
            choice.detector.close()
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("yolo")


def test_no_model_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    """A trimmed install without the bundled file: the error says how to get one."""
    from fer_edge import model_files

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_DETECTOR_MODEL", raising=False)
    monkeypatch.setattr(model_files, "bundled_detector_model", lambda: None)
    with pytest.raises(DetectorError, match="models fetch"):
        make_detector("blazeface")
    if haar_unavailable() is None:
        assert make_detector("auto").detector.name == "haar"


def test_model_lookup_order(tmp_path, monkeypatch, blaze_model):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_DETECTOR_MODEL", raising=False)
    assert find_detector_model() == bundled_detector_model()  # the last resort, always there
    cached = cache_dir() / BLAZE_FACE.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(blaze_model.read_bytes())
    assert find_detector_model() == cached
    monkeypatch.setenv("FER_DETECTOR_MODEL", str(blaze_model))
    assert find_detector_model() == blaze_model
    assert find_detector_model(cached) == cached
    with pytest.raises(DetectorError, match="no such face detector model"):
        find_detector_model(tmp_path / "nope.tflite")
    monkeypatch.setenv("FER_DETECTOR_MODEL", str(tmp_path / "gone.tflite"))
    with pytest.raises(DetectorError, match="FER_DETECTOR_MODEL"):
        find_detector_model()
    # A folder or a pipe exists: named for what it is, not as missing.
    os.mkfifo(tmp_path / "pipe.tflite")
    for path, what in ((tmp_path, "a folder"), (tmp_path / "pipe.tflite", "not a regular file")):
        with pytest.raises(DetectorError, match=f"{what}; give a BlazeFace .tflite .--detector-model"):
            find_detector_model(path)
        monkeypatch.setenv("FER_DETECTOR_MODEL", str(path))
        with pytest.raises(DetectorError, match=f"{what}; give a BlazeFace .tflite .from .FER_DETECTOR"):
            find_detector_model()


def test_pinned_hash_is_the_shared_models(blaze_model):
    assert hashlib.sha256(blaze_model.read_bytes()).hexdigest() == BLAZE_FACE.sha256
    assert blaze_model.stat().st_size == BLAZE_FACE.size


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_downloads_and_checks_the_hash(http_folder, blaze_model, tmp_path, monkeypatch):
    folder, base = http_folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (folder / BLAZE_FACE.filename).write_bytes(blaze_model.read_bytes())
    url = f"{base}/{BLAZE_FACE.filename}"
    path, downloaded = fetch(url=url)
    assert downloaded and path == cache_dir() / BLAZE_FACE.filename
    assert path.read_bytes() == blaze_model.read_bytes()
    assert find_detector_model() == path
    assert fetch(url=url) == (path, False)
    assert BlazeFaceDetector(path).detect(textured_canvas()) == []


def test_fetch_refuses_a_wrong_file_and_leaves_nothing(http_folder, blaze_model, tmp_path):
    folder, base = http_folder
    (folder / "evil.tflite").write_bytes(b"x" * 5000)
    dest = tmp_path / "dest" / "models"  # neither folder exists: a failure leaves neither behind
    with pytest.raises(EdgeError, match="SHA-256"):
        fetch(dest_dir=dest, url=f"{base}/evil.tflite")
    assert not (tmp_path / "dest").exists()
    with open(folder / "endless.tflite", "wb") as endless:  # 1 GiB that takes no disk space here
        endless.truncate(1 << 30)
    with pytest.raises(EdgeError, match=f"endless.tflite: more than the model's {BLAZE_FACE.size:,} bytes"):
        fetch(dest_dir=dest, url=f"{base}/endless.tflite")
    with pytest.raises(EdgeError, match="HTTP 404"):
        fetch(dest_dir=dest, url=f"{base}/missing.tflite")
    with pytest.raises(EdgeError, match="download failed"):
        fetch(dest_dir=dest, url="http://127.0.0.1:9/blaze.tflite", timeout=2)
    with pytest.raises(EdgeError, match=r"--url blaze.tflite: not a URL this can download \(https://"):
        fetch(dest_dir=dest, url="blaze.tflite")  # was "unknown url type"
    assert not (tmp_path / "dest").exists()
    # A mirror on a local disk or share, as a file:// URL.
    assert fetch(dest_dir=dest, url=blaze_model.as_uri()) == (dest / BLAZE_FACE.filename, True)


def test_models_fetch_and_path_commands(http_folder, blaze_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fer_edge.cli import app

    folder, base = http_folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_DETECTOR_MODEL", raising=False)
    (folder / "b.tflite").write_bytes(blaze_model.read_bytes())
    runner = CliRunner()
    before = runner.invoke(app, ["models", "path"])
    assert before.exit_code == 0 and before.stdout.strip() == str(bundled_detector_model())
    fetched = runner.invoke(app, ["models", "fetch", "--url", f"{base}/b.tflite"])
    assert fetched.exit_code == 0 and fetched.stdout.startswith("downloaded:")
    again = runner.invoke(app, ["models", "fetch", "--url", f"{base}/b.tflite"])
    assert again.stdout.startswith("already there:")
    found = runner.invoke(app, ["models", "path"])
    assert found.stdout.strip() == str(cache_dir() / BLAZE_FACE.filename)
    (folder / "bad.tflite").write_bytes(b"bad")
    bad = runner.invoke(app, ["models", "fetch", "--url", f"{base}/bad.tflite", "--force"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:") and "SHA-256" in bad.stderr
    assert (cache_dir() / BLAZE_FACE.filename).read_bytes() == blaze_model.read_bytes()  # the good copy stays
    # Another file by that name is someone's (ours are checked before they land): kept, even with
    # --force, which only downloads a good copy again; a file as --dest is not a folder.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / BLAZE_FACE.filename).write_bytes(b"my own detector")
    for force in ([], ["--force"]):
        kept = runner.invoke(
            app, ["models", "fetch", "--url", f"{base}/b.tflite", "--dest", str(mine), *force]
        )
        assert kept.exit_code == 2 and "another file by that name is there" in kept.stderr
        assert (mine / BLAZE_FACE.filename).read_bytes() == b"my own detector"
    (mine / BLAZE_FACE.filename).unlink()
    assert (
        runner.invoke(app, ["models", "fetch", "--url", f"{base}/b.tflite", "--dest", str(mine)]).exit_code
        == 0
    )
    again = runner.invoke(
        app, ["models", "fetch", "--url", f"{base}/b.tflite", "--dest", str(mine), "--force"]
    )
    assert again.stdout.startswith("downloaded:")  # a good copy, downloaded again as asked
    assert (mine / BLAZE_FACE.filename).read_bytes() == blaze_model.read_bytes()
    not_folder = runner.invoke(app, ["models", "fetch", "--dest", str(mine / BLAZE_FACE.filename)])
    assert not_folder.exit_code == 2 and "a file, not a folder" in not_folder.stderr


def _broken_blazeface(path: Path, value: float) -> Path:
    """A real .tflite with BlazeFace's tensors (128x128x3 in; 896x16 boxes, 896x1 scores out) whose
    every output is `value`: what a damaged detector model gives."""
    import keras

    inputs = keras.Input((128, 128, 3), batch_size=1)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    constant = keras.layers.Lambda(lambda t: t * 0.0 + value)
    boxes = constant(keras.layers.Reshape((896, 16))(keras.layers.Dense(896 * 16)(pooled)))
    scores = constant(keras.layers.Reshape((896, 1))(keras.layers.Dense(896)(pooled)))
    path.write_bytes(convert(keras.Model(inputs, [boxes, scores]), "fp32"))
    return path


def test_a_detector_giving_nan_or_huge_boxes_is_an_error_or_no_face_not_noise(tmp_path):
    """NaN boxes escaped non-maximum suppression (446 copies of the whole frame), and 1e30 overflowed
    float32 with four RuntimeWarnings a frame."""
    import warnings

    frame = textured_canvas()
    nan = BlazeFaceDetector(_broken_blazeface(tmp_path / "nan.tflite", float("nan")))
    with pytest.raises(DetectorError, match="nan.tflite: gives NaN or infinite boxes; not a face detector"):
        nan.detect(frame)
    huge = BlazeFaceDetector(_broken_blazeface(tmp_path / "huge.tflite", 1e30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert huge.detect(frame) == []
