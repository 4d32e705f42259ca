"""Model files and images are untrusted input: bounded reads, one error line, no traceback."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from edge_helpers import convert, tiny_models
from typer.testing import CliRunner

from fer_edge.cli import app as edge_app
from fer_edge.errors import DetectorError


def _plain_tflite() -> bytes:
    """The tiny int8 model without its appended archive."""
    data = tiny_models()["int8"].read_bytes()
    return data[: data.index(b"PK\x03\x04")]


def _with_archive(tmp_path: Path, name: str, entries: dict[str, bytes], patch=None) -> Path:
    model = _plain_tflite()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    archive_bytes = bytearray(buffer.getvalue())
    if patch:
        patch(archive_bytes)
    path = tmp_path / name
    path.write_bytes(model + bytes(archive_bytes))
    return path


def _set_header_field(archive: bytearray, local_offset: int, central_offset: int, value: int) -> None:
    """Overwrite a 2-byte field in every local and central directory header."""
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = 0
        while (start := archive.find(signature, start)) >= 0:
            archive[start + offset : start + offset + 2] = struct.pack("<H", value)
            start += 4


def _one_error_line(result, *needles: str) -> None:
    output = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 2 if hasattr(result, "exit_code") else result.returncode == 2
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(n in errors[0] for n in needles), output


def _edge(*args):
    return CliRunner().invoke(edge_app, [str(a) for a in args])


def _export(*args):
    return subprocess.run(
        [sys.executable, "-m", "fer_export", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_a_huge_packed_labels_file_is_refused_without_reading_it(tmp_path):
    # 64 MiB of labels deflate to about 64 kB: the file stays small, the entry does not.
    path = _with_archive(tmp_path, "bomb.tflite", {"labels.txt": b"happy\n" * ((64 << 20) // 6)})
    assert path.stat().st_size < 1 << 20
    _one_error_line(_edge("info", path), "labels.txt", "claims")
    _one_error_line(_export("inspect", path), "labels.txt", "claims")


@pytest.mark.parametrize(
    "what, local, central, value, message",
    [
        ("encrypted", 6, 8, 0x1, "labels.txt is encrypted"),
        ("unknown compression", 8, 10, 99, "unsupported compression"),
    ],
)
def test_odd_zip_entries_are_one_error_line(tmp_path, what, local, central, value, message):
    path = _with_archive(
        tmp_path,
        "odd.tflite",
        {"labels.txt": b"angry\ndisgust\nfear\nhappy\nsad\nsurprise\nneutral\n"},
        lambda a: _set_header_field(a, local, central, value),
    )
    _one_error_line(_edge("info", path), message)
    _one_error_line(_export("inspect", path), message)


def test_a_model_without_labels_names_the_option_where_the_command_has_one(tmp_path):
    from fer_bench.cli import app as bench_app

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(_plain_tflite())
    import cv2

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((48, 48), 128, np.uint8))
    why = f"{bare}: the model carries no labels (no fer_model.json or labels.txt packed in it)"
    predicted = _edge("predict", face, "--crops", "-m", bare)
    assert predicted.exit_code == 2 and predicted.stderr.strip() == f"error: {why}; pass --labels FILE"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]))
    assert _edge("predict", face, "--crops", "-m", bare, "--labels", labels).exit_code == 0
    assert _edge("info", bare).stderr.strip() == f"error: {why}; predict and run take --labels FILE"
    timed = CliRunner().invoke(bench_app, ["latency", "-m", str(bare), "--runs", "5", "--out", str(tmp_path)])
    assert timed.exit_code == 2
    assert timed.stderr.strip() == (
        f"error: {why}; fer-bench measures models that carry their labels, as fer-export writes them"
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("labels", 5, "malformed 'labels' (not a JSON list)"),
        ("labels", [1, 2], "malformed 'labels' (not a list of names)"),
        ("input", "48x48", "malformed 'input' (not a JSON object)"),
        ("output", 7, "malformed 'output' (not a JSON object)"),
        ("name", ["a"], "malformed 'name' (not a JSON string)"),
        ("name", "\x1b[2J\x1b[31mfer", "a 'name' with control characters"),
        ("labels", ["angry"] * 6 + ["\x1b[2Jhappy"], "'labels' with control characters"),
    ],
)
def test_a_card_with_wrongly_typed_fields_is_one_error_line(tmp_path, field, value, message):
    card = {"format": "fer-model/1", "name": "x", "labels": ["angry"] * 7, field: value}
    path = _with_archive(tmp_path, "card.tflite", {"fer_model.json": json.dumps(card).encode()})
    _one_error_line(_edge("info", path), "fer_model.json", message)
    _one_error_line(_export("inspect", path), "fer_model.json", message)


def test_labels_must_be_printable_names(tmp_path):
    """A label reaches the terminal, the JSON and the overlay: a page-long one from a model's labels.txt
    (which no card checks) is refused, as an escape sequence in the card is."""
    labels = "\n".join(["angry", "disgust", "fear", "happy" * 30, "sad", "surprise", "neutral"]) + "\n"
    path = _with_archive(tmp_path, "long.tflite", {"labels.txt": labels.encode()})
    _one_error_line(_edge("info", path), "is not a printable name of at most 64 characters")


def test_a_truncated_model_is_one_error_line(tmp_path):
    data = tiny_models()["int8"].read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: len(data) // 3])
    _one_error_line(_export("inspect", path), "cut short")
    _one_error_line(_edge("info", path))
    # Cut inside its packed card and labels, the weights still load: it said "carries no labels; pass
    # --labels FILE", as if the model had never had any.
    packed = data.find(b"PK\x03\x04")
    face = tmp_path / "face.png"
    face.write_bytes(_png_header_only(48, 48))
    for cut in (packed + 40, packed + (len(data) - packed) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        for result in (
            _edge("info", path),
            _edge("predict", "--crops", face, "-m", path),
            _export("inspect", path),
        ):
            _one_error_line(
                result, "cut.tflite: its packed fer_model.json and labels.txt are cut off or damaged"
            )


def test_damaged_weights_fail_the_crc_written_at_export(tmp_path):
    """One flipped bit in the weights (a disk, a copy) ran silently, scoring faces a little wrong."""
    import zlib

    from fer_export.model_file import read_card

    data = tiny_models()["int8"].read_bytes()
    packed = data.find(b"PK\x03\x04")
    crc = read_card(data)["flatbuffer_crc32"]
    assert crc == f"{zlib.crc32(data[:packed]):08x}"  # the CRC-32 of all before the packed files
    assert "weights: CRC-32 " + crc in _export("inspect", tiny_models()["int8"]).stdout
    damaged = bytearray(data)
    damaged[packed // 2] ^= 0x10
    path = tmp_path / "flipped.tflite"
    path.write_bytes(bytes(damaged))
    face = tmp_path / "face.png"
    face.write_bytes(_png_header_only(48, 48))
    for result in (
        _edge("predict", "--crops", face, "-m", path),
        _edge("info", path),
        _export("inspect", path),
    ):
        _one_error_line(
            result, "flipped.tflite: damaged: its weights do not match the CRC-32 written at export"
        )
    # A card whose CRC is not one is refused as malformed, not compared.
    card = read_card(data)
    card["flatbuffer_crc32"] = "not-hex!"
    odd = _with_archive(tmp_path, "odd.tflite", {"fer_model.json": json.dumps(card).encode()})
    _one_error_line(_edge("info", odd), "malformed 'flatbuffer_crc32'")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: what a decompression bomb looks like to a reader."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    models = tiny_models()
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(30000, 30000))
    result = _edge("predict", big, "--crops", "-m", models["int8"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "30000x30000 pixels, over the limit of 50,000,000" in result.stderr
    # The limit is an option: a real 64x64 image passes at 4096 pixels and is refused at 4095.
    import cv2

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((64, 64), 128, np.uint8))
    assert _edge("predict", face, "--crops", "-m", models["int8"], "--max-pixels", "4096").exit_code == 0
    refused = _edge("predict", face, "--crops", "-m", models["int8"], "--max-pixels", "4095")
    assert refused.exit_code == 2 and "64x64 pixels, over the limit of 4,095" in refused.stderr


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".png"])
def test_image_sizes_are_read_from_the_header(tmp_path, suffix):
    import cv2

    from fer_edge.images import header_size

    path = tmp_path / f"x{suffix}"
    cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8))
    assert header_size(path.read_bytes()[:65536]) == (53, 37)


@pytest.mark.parametrize("suffix", [".tif", ".webp", ".pgm"])
def test_a_format_whose_header_is_not_read_here_obeys_the_pixel_limit_too(tmp_path, suffix):
    """TIFF, WebP and PGM are refused by OpenCV's own limit, which a command's --max-pixels sets (in a
    process of its own, as a user runs it): one line, not OpenCV's exception; a higher limit reads it."""
    import cv2

    image = tmp_path / f"big{suffix}"
    cv2.imwrite(str(image), np.full((1000, 1200), 128, np.uint8))  # 1.2 M pixels, a few kB compressed
    command = [sys.executable, "-m", "fer_edge", "predict", image, "--crops", "-m", tiny_models()["int8"]]
    refused = subprocess.run([*map(str, command), "--max-pixels", "1000000"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == (
        f"warning: {image}: over the limit of 1,000,000 pixels (--max-pixels or $FER_MAX_PIXELS); skipped"
    )
    assert "Traceback" not in refused.stderr
    read = subprocess.run([*map(str, command), "--max-pixels", "2000000"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout.startswith(f"{image}\t")


def test_opencv_s_own_limit_as_a_user_set_it_is_said_as_written(tmp_path):
    """OpenCV reads "1MB" as 1,048,576 pixels; the library user who set it reads it back, no traceback."""
    import cv2

    image = tmp_path / "big.webp"
    cv2.imwrite(str(image), np.full((1100, 1000, 3), 128, np.uint8))
    code = (
        "from pathlib import Path\nfrom fer_edge.images import read_image, UnreadableImage\n"
        f"try:\n    read_image(Path({str(image)!r}))\nexcept UnreadableImage as err:\n    print(err)"
    )
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "1MB"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == f"{image}: over the limit of 1MB pixels ($FER_MAX_PIXELS)", result.stderr


def test_a_truncated_jpeg_is_refused_not_half_read(tmp_path):
    """libjpeg decodes a cut JPEG with its missing part gray: a label for half a face."""
    import cv2

    models = tiny_models()
    ok, encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (96, 96), np.uint8))
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(encoded.tobytes())
    cut.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    assert _edge("predict", whole, "--crops", "-m", models["int8"]).exit_code == 0
    result = _edge("predict", cut, "--crops", "-m", models["int8"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cut.jpg: a truncated JPEG" in result.stderr
    # Data after the end (a phone's motion photo appends a video) is not truncation; a cut image is cut
    # even when a header segment before its scan (an EXIF thumbnail) holds an end marker of its own.
    whole.write_bytes(encoded.tobytes() + b"\0" * 10_000)
    assert _edge("predict", whole, "--crops", "-m", models["int8"]).exit_code == 0
    data = encoded.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 10) + b"Exif\xff\xd9\0\0"
    cut.write_bytes(data[:2] + app1 + data[2 : len(data) // 2])
    assert "cut.jpg: a truncated JPEG" in _edge("predict", cut, "--crops", "-m", models["int8"]).stderr


def test_a_damaged_jpeg_that_decodes_is_one_warning_naming_it(tmp_path):
    """A JPEG cut inside its scan but ending in its end marker decodes, gray below the damage; libjpeg's
    own line ("Corrupt JPEG data: premature end of data segment") named no file."""
    import cv2

    models = tiny_models()
    ok, encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (96, 96), np.uint8))
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(encoded.tobytes()[: len(encoded) // 2] + b"\xff\xd9")
    model = ["-m", str(models["int8"])]
    live = ["run", "-s", str(damaged), "--headless", "-d", "blazeface"]
    for args in (["predict", str(damaged), "--crops"], live):
        command = [sys.executable, "-m", "fer_edge", *args, *model]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Corrupt JPEG data" not in proc.stderr, proc.stderr
        why = "damaged JPEG data (premature end of data segment); decoded as far as it goes"
        assert f"warning: {damaged}: {why}" in proc.stderr.splitlines(), proc.stderr


def test_a_damaged_png_is_one_line_saying_what_libpng_found(tmp_path):
    """libpng's own "libpng error: PNG input buffer is incomplete" reached stderr, naming no file, above
    our warning that the file could not be read."""
    import cv2

    models = tiny_models()
    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8))
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    model = ["-m", str(models["int8"])]
    for args in (["predict", str(damaged), "--crops"], ["run", "-s", str(damaged), "--headless"]):
        command = [sys.executable, "-m", "fer_edge", *args, *model, "-d", "blazeface"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "libpng" not in proc.stderr, proc.stderr
        assert f"{damaged}: damaged PNG data (PNG input buffer is incomplete)" in proc.stderr, proc.stderr


def _sparse(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk space: what a corrupt or hostile file can look like."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def test_huge_files_are_refused_from_their_size_before_any_read(tmp_path):
    """A 40 GB file named .png, .tflite or .csv was read whole: MemoryError tracebacks, or the memory."""
    models = tiny_models()
    image = _sparse(tmp_path / "huge.png", 1 << 30)  # over 50 M pixels x 8 bytes
    result = _edge("predict", image, "-m", models["int8"])
    assert (
        result.exit_code == 2 and "1,024 MiB, more than an image of 50,000,000 pixels takes" in result.stderr
    )
    model = _sparse(tmp_path / "huge.tflite", 600 << 20)
    _one_error_line(_edge("info", model), "600 MiB, larger than a model file may be (512 MiB)")
    _one_error_line(_export("inspect", model), "600 MiB, larger than a model file may be")
    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((96, 96, 3), 128, np.uint8))
    detect = _edge("predict", photo, "-m", models["int8"], "-d", "auto", "--detector-model", model)
    _one_error_line(detect, "face detector: ", "600 MiB, larger than a model file may be")
    from fer_edge.detectors import MediaPipeDetector, mediapipe_unavailable

    if mediapipe_unavailable() is None:  # MediaPipe mapped the whole file before it said anything
        with pytest.raises(DetectorError, match="mediapipe detector: .*600 MiB, larger than a model file"):
            MediaPipeDetector(model)
    from fer_train.data import DataError, load

    with pytest.raises(DataError, match="huge.csv:1: a line of over 1,048,576 characters"):
        load(_sparse(tmp_path / "huge.csv", 1 << 30), "train", cache=False)


def test_an_image_padded_far_beyond_its_pixels_is_refused_unread(tmp_path):
    """A 48x48 PNG followed by 40 MiB (a payload, or padding) was read whole, up to the 400 MB limit
    for 50 M pixels: its header's size bounds what an image file may take, from a file or a pipe."""
    import cv2

    models = tiny_models()
    face = np.full((48, 48), 128, np.uint8)
    ok, png = cv2.imencode(".png", face)
    plain, padded = tmp_path / "plain.png", tmp_path / "padded.png"
    plain.write_bytes(png.tobytes())
    padded.write_bytes(png.tobytes())
    _sparse_tail(padded, 40 << 20)
    result = _edge("predict", "--crops", plain, padded, "-m", models["int8"])
    assert result.exit_code == 2 and "plain.png\t" in result.stdout, result.output
    assert "padded.png: 40 MiB, more than a 48x48 image takes; skipped" in result.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "fer_edge", "predict", "-", "--crops", "-m", str(models["int8"])],
        input=padded.read_bytes(), capture_output=True, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 2
    assert "-: over 16 MiB, more than a 48x48 image takes" in piped.stderr.decode()


def _sparse_tail(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    """A 9000x6000 video took 1.2 GB as it ran; frames share the images' pixel limit."""
    import cv2

    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for _ in range(3):
        writer.write(np.full((64, 64, 3), 128, np.uint8))
    writer.release()
    args = ["run", "--source", video, "-m", tiny_models()["int8"], "--no-show", "--max-pixels"]
    _one_error_line(_edge(*args, "4095"), "v.avi: 64x64 frames, over the limit of 4,095 pixels")
    assert "summary: 3 frames" in _edge(*args, "4096").stderr


def test_a_keras_file_that_inflates_is_refused_before_keras_reads_it(tmp_path):
    """A 2 MB .keras whose config.json inflates to 2 GB took 4.9 GB of memory in Keras."""
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (32 << 20))
        archive.writestr("metadata.json", b"{}")
    assert bomb.stat().st_size < 1 << 20
    _one_error_line(
        _export("quantize", "--model", bomb, "--mode", "fp32", "--out", tmp_path / "out"),
        "config.json claims 33,554,432 bytes (at most 16,777,216)",
    )
    from fer_train.models import build_model, load_model

    real = tmp_path / "fer_nano.keras"  # a real model's files are well inside the limits
    build_model("fer_nano").save(real)
    assert load_model(real).output_shape == (None, 7)


def test_a_keras_file_from_a_newer_keras_says_so(tmp_path):
    """Keras 3.15 saves initializer options that Keras 3.12 (the last for Python 3.10) rejects with a
    page of 'could not be deserialized'; the one line says which Keras saved it and what to do."""
    import keras

    from fer_train.models import ModelFileError, load_model

    def from_the_future(dense: dict) -> None:
        dense["kernel_initializer"]["config"]["option_from_the_future"] = 1

    newer = _edited_keras(tmp_path / "newer.keras", from_the_future, keras_version="99.1.0")
    with pytest.raises(
        ModelFileError, match=rf"saved by Keras 99.1.0, newer than this Keras {keras.__version__}"
    ):
        load_model(newer)
    _one_error_line(
        _export("quantize", "--model", newer, "--mode", "fp32", "--out", tmp_path / "o"),
        "pip install -U keras",
    )


def test_a_keras_file_holding_python_code_is_refused_in_words(tmp_path):
    """Keras's safe mode refuses a Lambda layer's code; its message was cut mid-sentence at 200
    characters ("... If you trust the )"). The line now says what the file holds and that it is refused,
    and other errors are cut at a sentence's end."""
    import keras

    inputs = keras.Input((48, 48, 1))
    code = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    probabilities = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(code))
    keras.Model(inputs, probabilities).save(tmp_path / "code.keras")
    _one_error_line(
        _export("quantize", "--model", tmp_path / "code.keras", "--mode", "fp32", "--out", tmp_path / "o"),
        "code.keras: it holds Python code (such as a Lambda layer) that could do anything; not loaded",
    )
    from fer_train.models import _first_sentence

    assert _first_sentence(ValueError("Bad header. Details follow.\nmore")) == "Bad header"
    long = _first_sentence(ValueError("word " * 100))
    assert len(long) <= 204 and long.endswith("word ...")


@pytest.mark.skipif(sys.platform != "linux", reason="the bound is Linux's RLIMIT_DATA")
def test_a_keras_file_declaring_layers_larger_than_its_weights_is_refused_within_bounded_memory(tmp_path):
    """An 80 kB .keras whose config declares a 2304x1000000 Dense layer: Keras allocated 10 GB (its
    initializer) before it read the weights that do not fit; loading is now held to a memory bound."""
    bomb = _edited_keras(tmp_path / "bomb.keras", lambda dense: dense.update(units=1_000_000))
    _one_error_line(
        _export("quantize", "--model", bomb, "--mode", "fp32", "--out", tmp_path / "o"),
        "bomb.keras: its layers take more memory than its",
        "a damaged or hostile model file",
    )


def _edited_keras(path: Path, edit, keras_version: str | None = None) -> Path:
    """A real .keras (Flatten, Dense(7)) whose Dense config `edit` changed after saving."""
    import keras

    saved = path.with_name("saved.keras")
    keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7)]).save(saved)
    with zipfile.ZipFile(saved) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["config"])
    files["config.json"] = json.dumps(config).encode()
    if keras_version:
        files["metadata.json"] = json.dumps({"keras_version": keras_version}).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("value", ["-5", "abc", "²", "٣٠٠"])
def test_a_bad_pixel_limit_in_the_environment_is_one_line_naming_it(tmp_path, value):
    """FER_MAX_PIXELS=-5 aborted the process inside OpenCV (std::invalid_argument); 'abc' said only
    "invalid literal for int()"; '²' (a digit to Python) was a traceback at import."""
    import os

    import cv2

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((48, 48), 128, np.uint8))
    command = [
        sys.executable,
        "-m",
        "fer_edge",
        "predict",
        str(face),
        "--crops",
        "-m",
        str(tiny_models()["int8"]),
    ]
    env = {**os.environ, "FER_MAX_PIXELS": value}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: $FER_MAX_PIXELS='{value}': give a positive whole number of pixels"
    )


def _pooling_model(side: int) -> bytes:
    """A real .tflite of a few hundred bytes whose input is side x side x 1: all a header must say."""
    import keras

    inputs = keras.Input((side, side, 1), batch_size=1)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return convert(keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(pooled)), "fp32")


def test_a_model_declaring_huge_tensors_is_refused_before_it_takes_the_memory(tmp_path):
    """A 1.5 kB model with a 30000x30000 input: predict resized each face to it (12 GB, 32 s)."""
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join("abcdefg") + "\n")
    face = tmp_path / "face.png"
    face.write_bytes(_sparse_png(48))
    huge = tmp_path / "huge.tflite"
    huge.write_bytes(_pooling_model(30000))
    message = "huge.tflite: its tensors take 3.4 GiB, more than a face model may (1 GiB)"
    _one_error_line(_edge("info", huge), message)
    _one_error_line(_edge("predict", "--crops", face, "-m", huge, "--labels", labels), message)
    _one_error_line(_edge("predict", face, "-d", "blazeface", "--detector-model", huge), message)
    from fer_edge.detectors import MediaPipeDetector, mediapipe_unavailable

    if mediapipe_unavailable() is None:  # MediaPipe Tasks allocates what a model declares, unasked
        with pytest.raises(DetectorError, match="mediapipe detector: .*its tensors take 3.4 GiB"):
            MediaPipeDetector(huge)
    wide = tmp_path / "wide.tflite"  # 4 MB of tensors, but no face crop holds 1000x1000 pixels
    wide.write_bytes(_pooling_model(1000))
    result = _edge("predict", "--crops", face, "-m", wide, "--labels", labels)
    _one_error_line(
        result, "wide.tflite: input 1000x1000 is larger than a face classifier takes (at most 512x512)"
    )
    fine = tmp_path / "fine.tflite"
    fine.write_bytes(_pooling_model(96))
    result = _edge("predict", "--crops", face, "-m", fine, "--labels", labels)
    assert result.exit_code == 0 and result.stdout.startswith(f"{face}\t"), result.output


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_a_batch_of_faces_is_held_to_the_tensor_bound_as_one_face_is(tmp_path):
    """A 512x512 model with 256 MiB of activations a face passes the 1 GiB bound alone; a batch of 12
    faces took 12 times that (3.3 GB), and 256 faces (the batch size) would take 64 GB."""
    import keras

    inputs = keras.Input((512, 512, 3))
    spread = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(256, 1)(inputs))
    wide = tmp_path / "wide.tflite"
    wide.write_bytes(
        convert(keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(spread)), "fp32")
    )
    script = (
        "import sys, numpy as np; from fer_edge.classifier import Classifier; "
        "c = Classifier(sys.argv[1], labels=list('abcdefg')); "
        "p = c.predict(np.random.default_rng(0).integers(0, 256, (12, 64, 64), dtype=np.uint8)); "
        # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) peak across exec into that.
        "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM')); "
        "print(p.shape[0], int(peak.split()[1]) >> 10)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(wide)], capture_output=True, text=True, timeout=120
    )
    faces, peak_mb = map(int, run.stdout.split())
    assert faces == 12 and peak_mb < 2000, run.stdout + run.stderr


def _sparse_png(side: int) -> bytes:
    import cv2

    return cv2.imencode(".png", np.full((side, side), 100, np.uint8))[1].tobytes()
