"""`fer-edge predict` and the embeddable API, on FER2013 faces from ../shared and real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_helpers import iou, paste_faces, shared_faces, textured_canvas, tiny_models
from typer.testing import CliRunner

from fer_edge import EmotionRecognizer
from fer_edge.boxes import Box
from fer_edge.classifier import Classifier
from fer_edge.cli import app
from fer_edge.errors import ModelError
from fer_train.spec import CLASSES

PLACES = [(20, 40, 220), (300, 20, 180), (400, 250, 200)]


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture
def env(shared, monkeypatch, tmp_path):
    """Detector model from the environment, as on a device after `models fetch`."""
    monkeypatch.setenv("FER_DETECTOR_MODEL", str(shared / "models" / "blaze_face_short_range.tflite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return shared


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_predict_crops_json_matches_the_classifier(env, models):
    folder = env / "fer2013" / "test" / "happy"
    result = invoke("predict", folder, "--crops", "--json", "--model", models["int8"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    files = sorted(folder.glob("*.jpg"))
    assert [r["path"] for r in records] == [str(f) for f in files]
    faces = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files[:20]])
    probs = Classifier(models["int8"]).predict(faces)
    assert [r["label"] for r in records[:20]] == [CLASSES[k] for k in probs.argmax(1)]
    assert set(records[0]["scores"]) == set(CLASSES)
    assert records[0]["score"] == pytest.approx(probs[0].max(), abs=1e-3)


def test_a_folder_s_gif_faces_are_classified_like_the_same_faces_in_png(env, models, tmp_path):
    """GIF is an image format OpenCV reads (from 4.11): a folder's GIFs are not silently passed over."""
    from PIL import Image

    for i, (_, face) in enumerate(shared_faces(env, per_class=1)[:3]):
        Image.fromarray(face).save(tmp_path / f"{i}.png")
        Image.fromarray(face).save(tmp_path / f"{i}.gif")  # 256 grays: the same pixels
    result = invoke("predict", tmp_path, "--crops", "--json", "--model", models["int8"])
    assert result.exit_code == 0, result.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert len(records) == 6
    for i in range(3):
        assert records[f"{i}.gif"]["scores"] == records[f"{i}.png"]["scores"]


def test_an_oversized_image_on_stdin_is_refused_by_its_header_without_reading_the_rest(models):
    """A pipe has no file size to check: a PNG header claiming 30000x30000 pixels is refused at once,
    while the writer still holds the pipe open, not after reading up to the byte limit."""
    import struct

    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 30000, 30000, 8, 0, 0, 0, 0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer_edge", "predict", "-", "--crops", "-m", str(models["int8"])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdin.write(header + bytes(70_000))
    proc.stdin.flush()  # and left open: reading on would wait for more
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        proc.kill()
        proc.stdin.close()
    assert "30000x30000 pixels, over the limit" in proc.stderr.read().decode()


def test_predict_reads_one_image_piped_to_stdin(env, models, tmp_path):
    """`-` is an image on stdin (curl ... | fer-edge predict -): the same answer as from its file."""
    faces = [f for _, f in shared_faces(env, per_class=1)[:3]]
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), paste_faces(textured_canvas(seed=4), faces, PLACES))
    args = ["predict", "--json", "--model", str(models["int8"]), "-d", "blazeface"]
    from_file = json.loads(invoke(*args, photo).stdout)
    piped = CliRunner().invoke(app, [*args, "-", "--save", str(tmp_path / "out")], input=photo.read_bytes())
    assert piped.exit_code == 0, piped.stderr
    record = json.loads(piped.stdout)
    assert record["path"] == "-" and record["faces"] and record["faces"] == from_file["faces"]
    assert cv2.imread(str(tmp_path / "out" / "stdin.png")).shape == (480, 640, 3)  # its annotated copy
    twice = CliRunner().invoke(app, [*args, "-", "-"], input=photo.read_bytes())
    assert twice.exit_code == 2 and "named twice" in twice.stderr


def test_predict_finds_and_classifies_faces_in_images(env, models, tmp_path):
    faces = [f for _, f in shared_faces(env, per_class=1)[:3]]
    frame = paste_faces(textured_canvas(seed=4), faces, PLACES)
    cv2.imwrite(str(tmp_path / "group.png"), frame)
    cv2.imwrite(str(tmp_path / "empty.png"), textured_canvas(seed=5))
    result = invoke("predict", tmp_path, "--json", "-m", models["fp32"], "-d", "blazeface")
    assert result.exit_code == 0, result.stderr
    assert "detector: blazeface" in result.stderr
    records = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    assert records[str(tmp_path / "empty.png")]["faces"] == []
    group = records[str(tmp_path / "group.png")]
    assert group["size"] == [640, 480] and len(group["faces"]) >= 2
    for face in group["faces"]:
        assert any(iou(face["box"], (x, y, s, s)) > 0.4 for x, y, s in PLACES)
        assert face["label"] in CLASSES and abs(sum(face["scores"].values()) - 1) < 0.01
    one = invoke(
        "predict", tmp_path / "group.png", "-m", models["fp32"], "-d", "blazeface", "--max-faces", "1"
    )
    assert one.exit_code == 0 and "1 face(s)" in one.stdout


def test_save_writes_each_image_with_its_faces_drawn_and_never_over_the_users_files(env, models, tmp_path):
    faces = [f for _, f in shared_faces(env, per_class=1)[:3]]
    photos = tmp_path / "photos"
    (photos / "2025").mkdir(parents=True)
    group = paste_faces(textured_canvas(seed=4), faces, PLACES)
    cv2.imwrite(str(photos / "2025" / "group.jpg"), group)
    cv2.imwrite(str(photos / "empty.bmp"), textured_canvas(seed=5))
    cv2.imwrite(str(tmp_path / "group.png"), group)
    out = tmp_path / "out"
    args = ["predict", photos, tmp_path / "group.png", "-m", models["fp32"], "-d", "blazeface", "--save", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    # Named as in the folder given; JPEG stays JPEG, other formats become PNG; each signed.
    saved = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert saved == ["2025/group.jpg", "empty.png", "group.png"]
    assert b"fer-edge annotated image" in (out / "2025" / "group.jpg").read_bytes()[:200]
    drawn = cv2.imread(str(out / "group.png")).astype(int)
    assert drawn.shape == group.shape
    changed = np.abs(drawn - group).max(axis=2) > 0
    assert changed.any() and not changed[300:, :300].any()  # boxes and labels, not the empty corner
    plain = cv2.imread(str(out / "empty.png")).astype(int)
    assert np.array_equal(plain, textured_canvas(seed=5))  # no face, nothing drawn, nothing lost (PNG)
    # Again: refused without --force, before any work; with it, its own copies are replaced.
    again = invoke(*args)
    assert again.exit_code == 2 and "exists already; use --force" in again.stderr and again.stdout == ""
    assert invoke(*args, "--force").exit_code == 0
    # A file of the user's at a copy's name survives --force.
    (out / "empty.png").write_bytes(b"\x89PNG\r\n\x1a\n my drawing")
    kept = invoke(*args, "--force")
    assert kept.exit_code == 2 and "not an annotated image this tool wrote" in kept.stderr
    assert (out / "empty.png").read_bytes() == b"\x89PNG\r\n\x1a\n my drawing"
    # Two inputs that would share a name, a copy over its own input, and crops are refused up front.
    cv2.imwrite(str(photos / "empty.png"), textured_canvas(seed=6))
    clash = invoke("predict", photos, "-m", models["fp32"], "--save", tmp_path / "other")
    both = (
        f"{photos / 'empty.bmp'} and {photos / 'empty.png'} would both be {tmp_path / 'other' / 'empty.png'}"
    )
    assert clash.exit_code == 2 and both in clash.stderr and not (tmp_path / "other").exists()
    onto = invoke("predict", photos / "empty.png", "-m", models["fp32"], "--save", photos, "--force")
    assert onto.exit_code == 2 and "is an input" in onto.stderr
    crops = invoke("predict", photos, "--crops", "-m", models["fp32"], "--save", tmp_path / "c")
    assert crops.exit_code == 2 and "with --crops" in crops.stderr


def test_a_stop_while_a_copy_is_saved_leaves_it_whole_and_listed(env, models, tmp_path, monkeypatch):
    """SIGTERM (or Ctrl-C) while `--save` writes a copy once left its hidden temporary file, or a copy
    whose line was never printed; it now takes effect after both."""
    import signal

    from fer_edge import predict

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), textured_canvas(seed=i))
    real = predict.write_bytes

    def write_then_stop(*args, **kwargs):  # the stop arrives as the second copy is written
        written = real(*args, **kwargs)
        if len(list((tmp_path / "out").iterdir())) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return written

    monkeypatch.setattr(predict, "write_bytes", write_then_stop)
    images = [tmp_path / f"{i}.png" for i in range(4)]
    result = invoke("predict", *images, "-m", models["int8"], "-d", "blazeface", "--save", tmp_path / "out")
    assert result.exit_code == 128 + signal.SIGTERM and "interrupted" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]  # no temporary files
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(p) for p in images[:2]]


def test_unreadable_images_are_skipped_then_reported(env, models, tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), shared_faces(env, per_class=1)[0][1])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = invoke("predict", tmp_path, "--crops", "-m", models["int8"])
    assert result.exit_code == 2
    assert "good.png" in result.stdout
    assert "warning:" in result.stderr and "broken.jpg" in result.stderr
    assert "summary: 1 image(s), 1 face(s), 1 unreadable" in result.stderr  # a folder gets a summary
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 images")
    (tmp_path / "copying.png").touch()  # an empty file says so
    result = invoke("predict", tmp_path / "copying.png", "--crops", "-m", models["int8"])
    assert result.exit_code == 2 and "copying.png: an empty file" in result.stderr
    # Other tools' hidden files are not the user's images: macOS's ._good.png, a .thumbnails/ folder.
    (tmp_path / "broken.jpg").unlink()
    (tmp_path / "copying.png").unlink()
    (tmp_path / "._good.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".thumbnails").mkdir()
    cv2.imwrite(str(tmp_path / ".thumbnails" / "good.png"), shared_faces(env, per_class=1)[0][1])
    result = invoke("predict", tmp_path, "--crops", "-m", models["int8"])
    assert result.exit_code == 0 and result.stdout.count("good.png") == 1, result.stderr
    assert "summary: 1 image(s), 1 face(s), 0 unreadable" in result.stderr  # a folder of one image too
    single = invoke("predict", tmp_path / "good.png", "--crops", "-m", models["int8"])
    assert single.exit_code == 0 and "summary:" not in single.stderr  # one image named: its line says it


def test_file_names_with_control_characters_are_shown_escaped(env, models, tmp_path):
    """A file name is untrusted text: an escape sequence in it rewrote the terminal, a tab split the
    tab-separated line. They are shown escaped, as `ls` shows them; --json was already safe."""
    cv2.imwrite(str(tmp_path / "tab\tname.png"), shared_faces(env, per_class=1)[0][1])
    (tmp_path / "\x1b[2Jbroken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = invoke("predict", tmp_path, "--crops", "-m", models["int8"])
    assert "\x1b" not in result.stdout + result.stderr and "\t" not in result.stdout.split("\t")[0]
    assert result.stdout.startswith(f"{tmp_path}/tab\\tname.png\t")
    assert "warning: " + str(tmp_path) + "/\\x1b[2Jbroken.jpg: not an image" in result.stderr
    missing = invoke("predict", tmp_path / "\x1b[31mnope.jpg", "--crops", "-m", models["int8"])
    assert missing.stderr.strip() == f"error: {tmp_path}/\\x1b[31mnope.jpg: no such file or folder"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "nowhere/", "--crops"], "no such file or folder"),
        (["predict", "{fifo}", "--crops"], "fifo: not a regular file or folder"),
        # An empty $VAR is Path(""), the current folder: refused, not searched.
        (["predict", "", "--crops"], "an input is empty"),
        (["run", "--source", "", "--no-show", "-m", "{int8}"], "--source is empty"),
        (["predict", "{img}", "--crops", "-m", "{tmp}/missing.tflite"], "no such model file"),
        (["predict", "{img}", "--crops", "-m", "{junk}"], "not a usable TFLite model"),
        (["predict", "{img}", "--crops", "-m", "{fifo}"], "fifo: not a regular file; give a .tflite"),
        (["predict", "{img}", "--crops", "-m", "{keras}"], "a Keras model; fer-edge runs .tflite files"),
        (
            ["predict", "{img}", "-m", "{int8}", "-d", "blazeface", "--detector-model", "{tmp}/x.tflite"],
            "no such face",
        ),
    ],
)
def test_bad_input_is_one_error_line(env, models, tmp_path, args, message):
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), shared_faces(env, per_class=1)[0][1])
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    keras = tmp_path / "model.keras"
    keras.write_bytes(b"PK\x03\x04" + b"\x00" * 60)  # what a Keras file starts with: a zip archive
    os.mkfifo(tmp_path / "fifo")  # reading it would wait forever for a writer
    values = {"img": img, "tmp": tmp_path, "junk": junk, "keras": keras, "int8": models["int8"]}
    values["fifo"] = tmp_path / "fifo"
    result = invoke(*[a.format(**values) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1]
    assert "Traceback" not in result.stderr


def test_default_model_is_used_or_missing_clearly(env, tmp_path):
    from fer_models import DEFAULT_MODEL

    img = tmp_path / "face.png"
    cv2.imwrite(str(img), shared_faces(env, per_class=1)[0][1])
    result = invoke("predict", img, "--crops", "--json")
    if DEFAULT_MODEL.is_file():
        assert result.exit_code == 0 and json.loads(result.stdout)["label"] in CLASSES
    else:
        assert result.exit_code == 2 and "no default model" in result.stderr


def test_python_m_fer_edge_is_the_cli(env, models):
    folder = env / "fer2013" / "test" / "surprise"
    command = [
        sys.executable,
        "-m",
        "fer_edge",
        "predict",
        str(folder),
        "--crops",
        "--json",
        "-m",
        str(models["fp32"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cli = invoke("predict", folder, "--crops", "--json", "-m", models["fp32"])
    assert result.stdout.splitlines() == cli.stdout.splitlines()


def test_api_detects_or_takes_boxes_in_bgr_or_rgb(env, models):
    faces = [f for _, f in shared_faces(env, per_class=1)[:3]]
    frame = paste_faces(textured_canvas(seed=4), faces, PLACES)
    with EmotionRecognizer(models["fp32"], detector="blazeface") as fer:
        found = fer(frame)
        assert found and all(f.label in CLASSES for f in found)
        given = fer(frame, boxes=[(x, y, s, s) for x, y, s in PLACES])
        assert [f.box.as_list() for f in given] == [[x, y, s, s] for x, y, s in PLACES]
        rgb = fer(frame[..., ::-1].copy(), boxes=[(x, y, s, s) for x, y, s in PLACES], color="rgb")
        assert [f.label for f in rgb] == [f.label for f in given]
        assert np.allclose([f.score for f in rgb], [f.score for f in given], atol=0.02)
        assert fer(frame, boxes=[]) == []
        assert fer(frame, boxes=[(5, 5, 4, 4)]) == []  # tiny faces are not read
        edge = fer(frame, boxes=[(600, 440, 80, 80)])  # a box past the frame's edge still gives a crop
        assert len(edge) == 1 and set(edge[0].to_dict()) >= {"box", "label", "score", "scores"}
    with EmotionRecognizer(models["fp32"], detector="blazeface") as fer:
        gray = fer(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        assert len(gray) == len(found)  # the canvas loses its colour, the faces stay where they are
        assert all(iou(g.box.as_list(), f.box.as_list()) > 0.8 for g, f in zip(gray, found, strict=True))
        with_axis = fer(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None])  # (H, W, 1): the same
        assert [f.to_dict() for f in with_axis] == [f.to_dict() for f in gray]
    with pytest.raises(ValueError, match="uint8"):
        EmotionRecognizer(models["fp32"], detector=None)(frame.astype(np.float32), boxes=[])
    for odd in (np.zeros((0, 0, 3), np.uint8), np.zeros((48, 48, 2), np.uint8)):  # not OpenCV's assertion
        with pytest.raises(ValueError, match="frame must be a uint8 image"):
            EmotionRecognizer(models["fp32"], detector=None)(odd, boxes=[(0, 0, 48, 48)])
    # Used after its `with` block, it says it is closed (it said "no detector: pass boxes"); the
    # caller's boxes are still classified.
    with pytest.raises(ValueError, match="this recognizer is closed"):
        fer(frame)
    assert [f.to_dict() for f in fer(frame, boxes=[(x, y, s, s) for x, y, s in PLACES])] == [
        f.to_dict() for f in given
    ]


def test_crops_repeat_the_frame_edge_and_stay_bounded():
    from fer_edge.crops import square_crop

    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    padded = np.pad(frame, ((100, 100), (100, 100), (0, 0)), mode="edge")  # the frame's edges repeated
    for x, y, w, h in [(10, 8, 20, 20), (-6, -4, 20, 16), (50, 40, 30, 30), (-30, 10, 100, 100)]:
        crop = square_crop(frame, Box(x, y, w, h), margin=0.1)
        s = round(max(w, h) * 1.2)
        x0, y0 = round(x + w / 2 - s / 2), round(y + h / 2 - s / 2)
        assert np.array_equal(crop, padded[100 + y0 : 100 + y0 + s, 100 + x0 : 100 + x0 + s])
    # A box a billion pixels wide (a caller's detector gone wrong) is cut to twice the frame's side.
    assert square_crop(frame, Box(-5e8, -5e8, 1e9, 1e9), margin=0.1).shape == (128, 128, 3)


def test_api_refuses_malformed_boxes_and_drops_boxes_outside_the_frame(models):
    frame = np.full((100, 100, 3), 128, np.uint8)
    with EmotionRecognizer(models["fp32"], detector=None) as fer:
        assert fer(frame, boxes=[(-50, -50, 20, 20), (200, 10, 30, 30)]) == []
        assert len(fer(frame, boxes=[(-1e9 + 10, 0, 1e9, 100)])) == 1  # overlaps by 10 pixels
        for bad in [(1, 2, 3), ("a", 1, 2, 3), (0, 0, float("nan"), 20), (0, 0, -20, 20), 7]:
            with pytest.raises(ValueError, match="a box is"):
                fer(frame, boxes=[bad])


def test_api_refuses_settings_the_cli_would_refuse(models):
    # --margin takes 0 to 1 and --max-faces at least 1; the API said nothing and read 1-pixel crops
    # (margin -1) or every face (max_faces 0).
    for settings, message in [
        ({"margin": -1}, "margin"),
        ({"margin": 5}, "margin"),
        ({"max_faces": 0}, "max_faces"),
        ({"min_face": -5}, "min_face"),
        ({"min_face": float("nan")}, "min_face"),
    ]:
        with pytest.raises(ValueError, match=message):
            EmotionRecognizer(models["fp32"], detector=None, **settings)


def test_api_without_a_model_says_so(tmp_path):
    with pytest.raises(ModelError):
        EmotionRecognizer(tmp_path / "none.tflite", detector=None)


def test_info_describes_a_model(models):
    result = invoke("info", models["int8"], "--json")
    assert result.exit_code == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["labels"] == list(CLASSES) and described["variant"] == "int8"
    assert described["input"] == {"size": 48, "channels": 1, "dtype": "int8"}
    assert described["runtime"] in ("ai_edge_litert", "tflite_runtime")
    # The same for people: words, not Python's reprs of the JSON's lists and objects.
    lines = invoke("info", models["int8"]).stdout.splitlines()
    assert f"labels: {', '.join(CLASSES)}" in lines and "input: 48x48x1 int8" in lines, lines
    assert "output: int8 probabilities" in lines


def test_info_takes_the_model_as_predict_and_run_do(models):
    """`fer-edge info -m nano`, as a user of `predict -m nano` types it; the model named twice is refused."""
    named = invoke("info", "-m", models["int8"], "--json")
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout) == json.loads(invoke("info", models["int8"], "--json").stdout)
    assert json.loads(invoke("info", "-m", "nano", "--json").stdout)["name"] == "fer_nano"
    both = invoke("info", models["int8"], "-m", "nano")
    assert both.exit_code == 2
    assert both.stderr.strip() == "error: give the model once: as MODEL or as --model, not both"


def test_no_native_library_chatter_reaches_the_terminal(env, models, tmp_path):
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), cv2.resize(shared_faces(env, per_class=1)[3][1], (200, 200)))
    command = [sys.executable, "-m", "fer_edge", "predict", str(img), "-m", str(models["int8"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    noise = [ln for ln in result.stderr.splitlines() if ln.startswith(("INFO:", "I0000", "W0000", "[ WARN"))]
    assert noise == [], result.stderr
    assert result.stderr.startswith("detector: ")  # what the user is told stays


def test_damaged_images_are_one_line_each_without_opencv_s_log(models, tmp_path):
    """OpenCV logs `[ERROR:...]` lines (TIFF_Error, "can't read header") from C++ on a damaged file:
    the user reads our one line per image instead; FER_VERBOSE=1 shows OpenCV's own."""
    face = np.full((64, 64), 128, np.uint8)
    for suffix in (".png", ".tif", ".webp"):
        cv2.imwrite(str(tmp_path / f"whole{suffix}"), face)
        data = (tmp_path / f"whole{suffix}").read_bytes()
        (tmp_path / f"whole{suffix}").unlink()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2] if suffix != ".webp" else data[:30])
    command = [sys.executable, "-m", "fer_edge", "predict", tmp_path, "--crops", "-m", models["int8"]]
    user_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}  # not this process's
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=user_env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    names = ("cut.png", "cut.tif", "cut.webp")
    assert lines[:3] == [f"warning: {tmp_path / n}: not an image OpenCV can read; skipped" for n in names]
    assert lines[3].startswith("summary: 0 image(s), 0 face(s), 3 unreadable")
    assert lines[4:] == ["error: 3 of 3 images could not be read"]
    verbose = {**user_env, "FER_VERBOSE": "1"}
    assert (
        "TIFF" in subprocess.run(list(map(str, command)), capture_output=True, text=True, env=verbose).stderr
    )


def test_a_reader_that_stops_early_ends_the_command_quietly(env, models):
    """`fer-edge predict DIR --json | head -1`: a closed stdout ends the run as it ends a Unix tool."""
    command = [sys.executable, "-m", "fer_edge", "predict", str(env / "fer2013" / "test" / "happy")]
    reader = subprocess.Popen(
        [*command, "--crops", "--json", "-m", str(models["int8"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert json.loads(reader.stdout.readline())["label"] in CLASSES
    reader.stdout.close()
    stderr = reader.stderr.read()
    assert reader.wait(timeout=120) == 141, stderr
    assert "error" not in stderr and "Traceback" not in stderr and "Exception" not in stderr


def test_models_list_shows_every_shipped_model_with_its_measured_accuracy():
    from fer_models import SHIPPED

    rows = [json.loads(line) for line in invoke("models", "list", "--json").stdout.splitlines()]
    assert [r["name"] for r in rows] == list(SHIPPED)
    by_name = {r["name"]: r for r in rows}
    int8 = [r for r in rows if r["input"].endswith("int8")]
    # What --model's help promises: the default is the most accurate int8 model, nano the smallest.
    assert by_name["default"]["accuracy"] == max(r["accuracy"] for r in int8)
    assert by_name["nano"]["kib"] == min(r["kib"] for r in rows)
    assert all(r["input"].startswith("rgb") for r in rows if r["name"].endswith("app"))
    table = invoke("models", "list").stdout.splitlines()
    assert len(table) == len(SHIPPED) + 2 and all(len(line) <= 80 for line in table[:-1])
    assert table[1].split()[:2] == ["default", SHIPPED["default"]]


def test_threads_sharing_a_recognizer_get_what_one_thread_gets(env):
    """A web server's threads sharing one EmotionRecognizer: each interpreter holds one input and one
    output, so calls at once raised LiteRT's "reference to internal data" RuntimeError (or could swap
    answers). Each stage now takes turns."""
    import threading

    faces = [f for _, f in shared_faces(env, per_class=1)]
    frames = [paste_faces(textured_canvas(seed=s), faces[s::3], PLACES) for s in range(3)]
    with EmotionRecognizer("nano", detector="blazeface") as fer:
        expected = [[(f.label, f.score, f.box.as_list()) for f in fer(frame)] for frame in frames]
        assert all(expected), "every frame has faces"
        got, errors = [], []

        def work(k: int) -> None:
            try:
                for i in range(20):
                    frame = (k + i) % len(frames)
                    got.append((frame, [(f.label, f.score, f.box.as_list()) for f in fer(frames[frame])]))
            except Exception as err:  # noqa: BLE001 - any failure in a thread is the finding
                errors.append(repr(err))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(got) == 80
    assert all(faces == expected[frame] for frame, faces in got)
