"""`fer-edge run`: videos written and read back, live streams that drop, the preview server, a soak run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from edge_helpers import paste_faces, shared_faces, textured_canvas, tiny_models
from typer.testing import CliRunner

from conftest import small_disk
from fer_edge.boxes import Box
from fer_edge.capture import Frame, LiveSource, open_source
from fer_edge.cli import app
from fer_edge.errors import SourceError
from fer_edge.live import LiveOptions, Stats, process
from fer_edge.recognizer import EmotionRecognizer
from fer_edge.serve import PreviewServer
from fer_edge.tracking import Tracker
from fer_train.spec import CLASSES

PLACES = [(20, 40, 220), (300, 20, 180), (400, 250, 200)]


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture
def env(shared, monkeypatch):
    monkeypatch.setenv("FER_DETECTOR_MODEL", str(shared / "models" / "blaze_face_short_range.tflite"))
    return shared


def moving_faces_video(shared, path, frames=24, fps=12.0):
    """A video of three pasted faces, two of them drifting right by 2 pixels a frame."""
    faces = [f for _, f in shared_faces(shared, per_class=1)[3:6]]
    canvas = textured_canvas(seed=8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(frames):
        writer.write(
            paste_faces(canvas, faces, [(x + 2 * (i % 40), y, s) for x, y, s in PLACES[:2]] + [PLACES[2]])
        )
    writer.release()
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_run_on_a_video_saves_video_and_json(env, models, tmp_path):
    video = moving_faces_video(env, tmp_path / "in.mp4")
    out, lines = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    args = ["run", "--source", video, "-m", models["int8"], "-d", "blazeface", "--no-show"]
    result = invoke(*args, "--save", out, "--json-file", lines, "--detect-every", "3", "--max-faces", "2")
    assert result.exit_code == 0, result.stderr
    assert "summary: 24 frames" in result.stderr and "FPS" in result.stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(24))
    assert all(1 <= len(r["faces"]) <= 2 for r in records)
    assert all(f["label"] in CLASSES and len(f["box"]) == 4 for r in records for f in r["faces"])
    # The same faces keep their track ids from the first frame to the last.
    assert {f["track"] for f in records[0]["faces"]} == {f["track"] for f in records[-1]["faces"]}
    read = cv2.VideoCapture(str(out))
    count = 0
    while True:
        ok, frame = read.read()
        if not ok:
            break
        assert frame.shape == (480, 640, 3)
        count += 1
    read.release()
    assert count == 24
    again = invoke(*args, "--save", out)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert invoke(*args, "--save", out, "--force", "--max-frames", "5").exit_code == 0
    # --force replaces the tool's own outputs, not a file of another kind given by mistake.
    mine = tmp_path / "notes.jsonl"
    mine.write_text("my notes\n")
    refused = invoke(*args, "--json-file", mine, "--force", "--max-frames", "5")
    assert refused.exit_code == 2 and "not a JSON lines file" in refused.stderr.strip().splitlines()[-1]
    assert mine.read_text() == "my notes\n"
    # Nor a camera's recording (FFmpeg did not write it), nor the video being read.
    footage = tmp_path / "holiday.mp4"
    footage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4000))
    refused = invoke(*args, "--save", footage, "--force")
    assert refused.exit_code == 2 and "not an MP4 video this tool wrote" in refused.stderr
    source = video.read_bytes()
    refused = invoke(*args, "--save", video, "--force")
    assert refused.exit_code == 2 and "is the --source" in refused.stderr
    refused = invoke(*args, "--save", out, "--json-file", out, "--force")
    assert refused.exit_code == 2 and "is also the --save file" in refused.stderr
    assert video.read_bytes() == source and footage.stat().st_size == 4012


def test_realtime_plays_a_video_file_at_its_own_frame_rate(env, models, tmp_path):
    """--realtime paces a file at its frame rate (to watch it); every frame is still processed."""
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=8, fps=10.0)
    args = ["run", "--source", video, "-m", models["int8"], "-d", "blazeface", "--no-show"]
    lines = tmp_path / "faces.jsonl"
    assert invoke(*args, "--json-file", lines, "--realtime").exit_code == 0
    times = [json.loads(line)["time"] for line in lines.read_text().splitlines()]
    # All 8 frames, frame i coming i/10 s after the first, however fast they decode.
    assert len(times) == 8 and times[-1] - times[0] >= 0.65, times


def test_run_on_images_and_folders_prints_json_lines(env, models, tmp_path, monkeypatch):
    faces = [f for _, f in shared_faces(env, per_class=1)[:3]]
    cv2.imwrite(str(tmp_path / "a.png"), paste_faces(textured_canvas(seed=1), faces, PLACES))
    cv2.imwrite(str(tmp_path / "b.png"), textured_canvas(seed=2))
    (tmp_path / "c.jpg").write_bytes(b"corrupt")
    result = invoke(
        "run", "--source", tmp_path, "-m", models["fp32"], "-d", "blazeface", "--json", "--no-show"
    )
    # The corrupt image is skipped with a warning and makes the exit status 2, as in predict.
    assert result.exit_code == 2, result.stderr
    assert "c.jpg: not an image OpenCV can read" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: 1 image(s) could not be read"
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and len(records[0]["faces"]) >= 2 and records[1]["faces"] == []
    assert [r["path"] for r in records] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    (tmp_path / "c.jpg").unlink()
    # Separate photos are not a sequence: each numbers its faces afresh (once, tracks ran across them).
    cv2.imwrite(str(tmp_path / "b.png"), paste_faces(textured_canvas(seed=2), faces[:1], [(60, 280, 180)]))
    numbered = invoke("run", "-s", tmp_path, "-m", models["fp32"], "-d", "blazeface", "--json")
    tracks = [[face["track"] for face in json.loads(line)["faces"]] for line in numbered.stdout.splitlines()]
    assert sorted(tracks[0]) == list(range(1, len(tracks[0]) + 1)) and tracks[1] == [1], tracks
    saved = invoke(
        "run", "-s", tmp_path, "-m", models["fp32"], "-d", "blazeface", "--save", tmp_path / "o.avi"
    )
    assert saved.exit_code == 0, saved.stderr
    single = invoke("run", "-s", tmp_path / "a.png", "-m", models["fp32"], "-d", "blazeface", "--json")
    assert single.exit_code == 0 and len(single.stdout.splitlines()) == 1
    # '-' is stdout, as for other Unix tools: the same line, and no file called '-'.
    monkeypatch.chdir(tmp_path)
    dash = invoke("run", "-s", "a.png", "-m", models["fp32"], "-d", "blazeface", "--json-file", "-")
    assert dash.exit_code == 0, dash.stderr
    (line,) = [json.loads(line) for line in dash.stdout.splitlines()]
    assert line["faces"] == json.loads(single.stdout)["faces"] and not (tmp_path / "-").exists()


def test_a_folders_images_of_other_shapes_keep_their_proportions_in_the_saved_video(env, models, tmp_path):
    """The first image sets the video's size; a later one of another shape was stretched to it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), textured_canvas(seed=1))  # 640x480
    cv2.imwrite(str(folder / "b.png"), np.full((480, 240, 3), 200, np.uint8))  # portrait, plain grey
    out = tmp_path / "o.avi"
    result = invoke("run", "-s", folder, "-m", models["fp32"], "-d", "blazeface", "--save", out, "--no-show")
    assert result.exit_code == 0, result.stderr
    read = cv2.VideoCapture(str(out))
    frames = [read.read()[1] for _ in range(2)]
    read.release()
    second = frames[1].astype(int)
    assert second.shape == (480, 640, 3)
    # 240 pixels wide at full height, centred: black bars of 200 pixels either side.
    assert second[:, 20:180].max() < 40 and second[:, 460:620].max() < 40
    assert abs(second[40:440, 340:440].mean() - 200) < 10


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("9", "camera 9: cannot open"),
        # Digits to Python, not to OpenCV: both once ended in a traceback in the thread opening them.
        ("99999999999999999999", "99999999999999999999: no such file, folder or camera"),
        ("²", "²: no such file, folder or camera"),
        ("{tmp}/notavideo.mp4", "not a video"),
        ("{tmp}/nothing", "no such file"),
        # A camera's password in its URL stays out of errors (and so out of logs).
        ("rtsp://admin:s3cret@127.0.0.1:1/live", "rtsp://admin:***@127.0.0.1:1/live: cannot open"),
        ("ftp://admin:s3cret@127.0.0.1/live", "ftp://admin:***@127.0.0.1/live: no such file"),
    ],
)
def test_bad_sources_are_one_error_line(env, models, tmp_path, source, message):
    (tmp_path / "notavideo.mp4").write_text("hello")
    out = tmp_path / "out" / "nested"
    result = invoke(
        "run", "--source", source.format(tmp=tmp_path), "-m", models["int8"], "-d", "blazeface",
        "--save", out / "v.mp4", "--json-file", out / "v.jsonl",
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert message in result.stderr and "Traceback" not in result.stderr and "s3cret" not in result.stderr
    assert not (tmp_path / "out").exists()  # the output paths were checked, and nothing left behind


def test_a_damaged_video_file_is_one_line_with_no_native_chatter(env, models, tmp_path):
    """OpenCV's own AVI reader wrote 'Unexpected element. Expected: LIST. Got: <binary>' to fd 2, below
    Python, before our error line: only a subprocess sees it."""
    writer = cv2.VideoWriter(str(tmp_path / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    damaged = tmp_path / "cut.avi"
    damaged.write_bytes((tmp_path / "whole.avi").read_bytes()[:2000])  # the header, cut short
    command = [sys.executable, "-m", "fer_edge", "run", "-s", str(damaged), "-m", str(models["int8"])]
    options = ["-d", "blazeface", "--no-show"]
    proc = subprocess.run(command + options, capture_output=True, text=True, errors="replace", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "detector: blazeface (asked for)",
        f"error: {damaged}: not a video or image OpenCV can read",
    ]


def test_bad_output_options_are_refused(env, models, tmp_path):
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=3)
    base = ["run", "-s", video, "-m", models["int8"], "-d", "blazeface"]
    assert "expected HOST:PORT" in invoke(*base, "--serve", "localhost").stderr
    assert ".mp4, .avi" in invoke(*base, "--save", tmp_path / "out.gif").stderr
    # Refused before the model loads (a missing model would be the error otherwise), as one line.
    early = ["run", "-s", video, "-m", tmp_path / "missing.tflite", "-d", "blazeface"]
    (tmp_path / "folder.jsonl").mkdir()
    taken = socket.create_server(("127.0.0.1", 0))  # a port another program listens on
    port = taken.getsockname()[1]
    for args, message in [
        (["--serve", f"127.0.0.1:{port}"], "cannot listen there"),
        (["--serve", ":99999"], "expected HOST:PORT"),
        (["--serve", "127.0.0.1:²"], "expected HOST:PORT"),  # was "invalid literal for int()"
        (["--json-file", tmp_path / "folder.jsonl"], "is a folder"),
        (["--save", "/proc/out.mp4"], "cannot write there"),
        (
            ["--json-file", tmp_path / "no" / "such" / "dir" / "x.jsonl", "--save", "/proc/x.avi"],
            "cannot write",
        ),
    ]:
        result = invoke(*early, *args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1], result.stderr
        assert "summary:" not in result.stderr  # nothing ran, so nothing to sum up
    taken.close()


def test_show_where_no_window_can_open_is_refused_before_the_run(env, tmp_path, monkeypatch):
    """Without a display (or with a headless OpenCV) --show fails at once, not after the first frame
    (or, with OpenCV's Qt backend, by aborting the process)."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = invoke("run", "-s", "0", "-m", tmp_path / "missing.tflite", "--show")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --show: ") and "use --save, --serve or --json" in last, result.stderr


def test_a_run_that_can_show_nothing_says_where_to_look(env, models, tmp_path, monkeypatch):
    """`fer-edge run --source 0` over SSH, or with the edge extra's headless OpenCV, showed nothing but
    the summary at the end, without a word why."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cv2.imwrite(str(tmp_path / "a.png"), textured_canvas(seed=1))
    base = ["run", "-s", tmp_path / "a.png", "-m", models["int8"], "-d", "blazeface"]
    silent = invoke(*base)
    assert silent.exit_code == 0, silent.stderr
    notes = [line for line in silent.stderr.splitlines() if line.startswith("note: no window: ")]
    assert len(notes) == 1 and "add --serve 127.0.0.1:8080" in notes[0], silent.stderr
    for output in (["--json"], ["--headless"], ["--save", tmp_path / "o.avi"]):
        assert "note: no window" not in invoke(*base, *output).stderr


def test_headless_never_opens_a_window_even_where_a_display_is_set(env, models, tmp_path, monkeypatch):
    """--headless (--no-show's other name) runs where --show, with this headless OpenCV, is refused."""
    monkeypatch.setenv("DISPLAY", ":0")
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=3)
    args = ["run", "--source", video, "-m", models["int8"], "-d", "blazeface", "--json"]
    shown = invoke(*args, "--show")
    assert shown.exit_code == 2 and "error: --show: " in shown.stderr
    headless = invoke(*args, "--headless")
    assert headless.exit_code == 0, headless.stderr
    assert [json.loads(line)["frame"] for line in headless.stdout.splitlines()] == [0, 1, 2]


def test_force_never_replaces_a_device_or_pipe(env, models, tmp_path):
    """Outputs are moved into place; moved over a named pipe (or /dev/null), it would replace the pipe
    (or the device) itself, even with --force."""
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=3)
    json_pipe, video_pipe = tmp_path / "faces.jsonl", tmp_path / "out.mp4"
    os.mkfifo(json_pipe)
    os.mkfifo(video_pipe)
    base = ["run", "-s", video, "-m", models["int8"], "-d", "blazeface", "--force"]
    for result in (invoke(*base, "--json-file", json_pipe), invoke(*base, "--save", video_pipe)):
        assert result.exit_code == 2 and "a device, pipe or socket" in result.stderr, result.stderr
    # A reader on a named pipe wants the lines as they come: it is told how to have them.
    assert (
        "(--json-file - writes to stdout, line by line: pipe that)"
        in invoke(*base, "--json-file", json_pipe).stderr
    )
    # Nor a symbolic link: moved into place, the output would replace the link, not its target (with
    # --force, /dev/stdout, a link to a file under pytest, became a regular file).
    ours = tmp_path / "ours.jsonl"
    assert invoke(*base, "--json-file", ours).exit_code == 0
    link = tmp_path / "link.jsonl"
    link.symlink_to(ours)
    refused = invoke(*base, "--json-file", link)
    assert refused.exit_code == 2 and "link.jsonl: a symbolic link" in refused.stderr, refused.stderr
    assert link.is_symlink()
    # /dev/stdout (without --force: never let a regression replace it) says how to write to stdout.
    no_force = [a for a in base if a != "--force"]
    assert "(--json-file - writes to stdout" in invoke(*no_force, "--json-file", "/dev/stdout").stderr
    assert stat.S_ISFIFO(os.stat(json_pipe).st_mode) and stat.S_ISFIFO(os.stat(video_pipe).st_mode)


class _Publisher:
    """An MJPEG stream on 127.0.0.1 (our own preview server) fed with numbered frames."""

    def __init__(self, address="127.0.0.1:0"):
        self.server = PreviewServer(address)
        self.port = int(self.server.url.rsplit(":", 1)[1].strip("/"))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self):
        i = 0
        while not self.stop.is_set():
            self.server.publish(np.full((120, 160, 3), i % 250, np.uint8))
            i += 1
            time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.server.close()
        self.thread.join()


def test_live_stream_hands_over_the_newest_frame_and_gives_up_when_it_drops():
    publisher = _Publisher()
    source = LiveSource(
        f"http://127.0.0.1:{publisher.port}/stream.mjpg", reconnect=2, backoff=0.05, read_timeout=2
    )
    lags, seen = [], 0
    with pytest.raises(SourceError, match="did not come back after 2 tries"):
        for frame in source.frames():
            lags.append(time.time() - frame.time)
            seen += 1
            if seen == 15:
                publisher.close()
            time.sleep(0.05)  # a consumer slower than the stream
    source.close()
    assert seen >= 15 and source.skipped > 0  # frames were dropped, not queued
    assert max(lags[:15]) < 0.5  # so the frames handed over stayed fresh


def test_live_stream_reconnects_when_the_stream_comes_back():
    publisher = _Publisher()
    port = publisher.port
    source = LiveSource(f"http://127.0.0.1:{port}/stream.mjpg", reconnect=6, backoff=0.1, read_timeout=2)
    for seen, _ in enumerate(source.frames(), start=1):
        if seen == 5:
            publisher.close()
            publisher = _Publisher(f"127.0.0.1:{port}")
        if seen == 30:
            break
    source.close()
    publisher.close()
    assert source.reconnects >= 1


def test_preview_server_serves_page_frames_and_stream(env, models):
    frames = _synthetic_frames(env, 400)
    options = LiveOptions(source="-", serve="127.0.0.1:0", show=False)
    from fer_edge.live import Outputs

    outputs = Outputs(options, 15)
    base = outputs.server.url
    with EmotionRecognizer(models["int8"], detector="blazeface") as fer:
        worker = threading.Thread(target=process, args=(fer, frames, options, outputs, Stats()), daemon=True)
        worker.start()
        page = urllib.request.urlopen(base, timeout=5).read().decode()
        assert "/stream.mjpg" in page
        time.sleep(0.3)
        jpeg = urllib.request.urlopen(base + "frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
        with urllib.request.urlopen(base + "stream.mjpg", timeout=5) as stream:
            assert "multipart/x-mixed-replace" in stream.headers["Content-Type"]
            chunk = stream.read(20000)
        assert chunk.count(b"--ferframe") >= 1 and b"\xff\xd8" in chunk
        # A query names the same page (a cache-buster); HEAD answers with headers alone (an uptime check),
        # at once even for the endless stream.
        assert urllib.request.urlopen(base + "frame.jpg?t=1", timeout=5).read()[:2] == b"\xff\xd8"
        for path, kind in (("", "text/html"), ("stream.mjpg", "multipart/x-mixed-replace")):
            request = urllib.request.Request(base + path, method="HEAD")
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200 and kind in answer.headers["Content-Type"]
                assert answer.read() == b""
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(urllib.request.Request(base + "etc/passwd", method="HEAD"), timeout=5)
        worker.join(timeout=60)
    outputs.close()


def test_a_file_that_appears_at_an_output_during_the_run_is_kept_and_so_is_the_run(tmp_path):
    """Another process writing the same names while a recording runs: neither is replaced."""
    from fer_edge.errors import EdgeError
    from fer_edge.live import Outputs

    video, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    outputs = Outputs(LiveOptions(source="-", save=video, json_file=lines, show=False), 15)
    image = np.full((120, 160, 3), 90, np.uint8)
    for i in range(5):
        outputs.write(Frame(i, image, time.time()), [], image)
    video.write_bytes(b"another recording")
    lines.write_text("another run's lines\n")
    with pytest.raises(
        EdgeError, match="--save .*out.mp4: a file of that name appeared during the run"
    ) as err:
        outputs.close()
    assert "--json-file" in str(err.value)
    assert video.read_bytes() == b"another recording" and lines.read_text() == "another run's lines\n"
    kept = {p.suffix: p for p in tmp_path.iterdir() if p.name.startswith(".")}  # this run's, named
    assert set(kept) == {".jsonl", ".mp4"} and all(str(p) in str(err.value) for p in kept.values())
    assert len(kept[".jsonl"].read_text().splitlines()) == 5
    assert cv2.VideoCapture(str(kept[".mp4"])).get(cv2.CAP_PROP_FRAME_COUNT) == 5


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_preview_server_listens_on_ipv6_in_brackets():
    server = PreviewServer("[::1]:0")
    try:
        assert server.url.startswith("http://[::1]:")
        server.publish(np.zeros((48, 64, 3), np.uint8))
        jpeg = urllib.request.urlopen(server.url + "frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    finally:
        server.close()


def test_a_preview_on_every_interface_shows_a_reachable_address_and_says_who_can_watch(env, models, tmp_path):
    """--serve 0.0.0.0:8080 printed 'preview: http://0.0.0.0:8080/', no address a browser elsewhere
    can open, and nothing said that the whole network may now watch the camera."""
    server = PreviewServer("0.0.0.0:0")
    try:
        assert server.everywhere and server.url.startswith(f"http://{socket.gethostname()}:")
        server.publish(np.zeros((48, 64, 3), np.uint8))
        port = server.url.rsplit(":", 1)[1].strip("/")
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg", timeout=5).status == 200
    finally:
        server.close()
    assert not PreviewServer("127.0.0.1:0").everywhere
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=2)
    result = invoke("run", "-s", video, "--serve", "0.0.0.0:0", "-m", models["int8"], "-d", "blazeface")
    preview = [line for line in result.stderr.splitlines() if line.startswith("preview: ")]
    assert result.exit_code == 0 and len(preview) == 1, result.stderr
    assert preview[0].endswith(
        "/ (on every network interface, no password: anyone who can reach this machine can watch)"
    )


def test_preview_server_caps_connections_and_closes_idle_ones(monkeypatch):
    from fer_edge import serve

    monkeypatch.setattr(serve, "MAX_CLIENTS", 4)
    monkeypatch.setattr(serve, "IDLE_TIMEOUT_S", 0.5)
    server = serve.PreviewServer("127.0.0.1:0")
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert threading.active_count() <= before + 4  # one thread per connection, no more
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(2)
        assert extra.recv(100).startswith(b"HTTP/1.0 503")  # over the cap: answered at once, no thread
        extra.close()
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before  # the idle connections were closed
        page = urllib.request.urlopen(server.url, timeout=5).read()
        assert b"/stream.mjpg" in page  # and the server serves again
    finally:
        for conn in idle:
            conn.close()
        server.close()


def test_preview_server_queues_a_burst_of_clients_while_busy():
    """While the pipeline holds the accepting thread back, 40 clients connecting at once wait in the
    kernel's queue instead of having their connection attempts dropped (socketserver's queue holds 5)."""
    from fer_edge import serve

    server = serve._BoundedServer(("127.0.0.1", 0), serve._handler(serve.FrameHub()))  # not accepting
    connected = []
    try:
        for _ in range(40):
            conn = socket.socket()
            conn.settimeout(0.5)
            try:
                conn.connect(server.server_address)
                connected.append(conn)
            except OSError:
                conn.close()
        assert len(connected) == 40
    finally:
        for conn in connected:
            conn.close()
        server.server_close()


def _synthetic_frames(shared, count, size=(320, 240)):
    """A generator of small frames with one or two faces moving about."""
    faces = [f for _, f in shared_faces(shared, per_class=1)[:2]]
    canvas = textured_canvas(size[1], size[0], seed=3)
    for i in range(count):
        x = 10 + (i % 40)
        image = paste_faces(canvas, faces, [(x, 20, 120), (180, 90, 110)][: 1 + (i // 50) % 2])
        yield Frame(i, image, time.time())


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc to read memory use")
@pytest.mark.slow
def test_soak_thousands_of_frames_with_flat_memory(env, models):
    options = LiveOptions(source="-", detect_every=2)
    stats = Stats()
    with EmotionRecognizer(models["int8"], detector="blazeface") as fer:
        process(fer, _synthetic_frames(env, 500), options, None, stats)
        before = _rss_mb()
        process(fer, _synthetic_frames(env, 3000), options, None, stats)
        after = _rss_mb()
    assert stats.frames == 3500 and stats.faces >= 3500
    assert after - before < 20, f"memory grew from {before:.0f} MB to {after:.0f} MB over 3000 frames"


class _StalledStream:
    """An MJPEG server that sends a few frames, then nothing more, and keeps the connection open."""

    def __init__(self, frames: int = 5):
        self.frames = frames
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 100, np.uint8))[1].tobytes()
        part = b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)
        head = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n"
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            conn.sendall(head + part * self.frames)

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_ctrl_c_on_another_thread_ends_the_wait_for_a_stalled_stream():
    """The kernel hands Ctrl-C to any thread (here a helper's): the loop must act on it at once even
    while the stream is stalled, rather than when it gives up on the stall (60 s here)."""

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    def interrupt():
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not the main one

    stream = _StalledStream()
    source = LiveSource(f"http://127.0.0.1:{stream.port}/stream.mjpg", reconnect=5, read_timeout=10)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        frames = source.frames()
        next(frames)
        threading.Thread(target=interrupt, daemon=True).start()
        start = time.monotonic()
        with pytest.raises(Interrupted):
            for _ in frames:
                pass
        assert time.monotonic() - start < 5
        start = time.monotonic()
        source.close()  # while the reader is still stuck in the stalled read
        assert time.monotonic() - start < 1.0
    finally:
        signal.signal(signal.SIGINT, previous)
        stream.close()
        source.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_cleanly_with_a_summary(env, models, tmp_path, stop):
    """A run on an endless live stream, interrupted by Ctrl-C or stopped by SIGTERM (systemd, docker):
    outputs are completed and a summary printed."""
    publisher = _Publisher()
    lines = tmp_path / "out.jsonl"
    source = f"http://127.0.0.1:{publisher.port}/stream.mjpg"
    command = [
        sys.executable,
        "-m",
        "fer_edge",
        "run",
        "-s",
        source,
        "-m",
        str(models["int8"]),
        "-d",
        "blazeface",
    ]
    command += ["--json-file", str(lines), "--save", str(tmp_path / "out.avi"), "--no-show"]
    # A shell that starts a job in the background (nohup, `&`) makes it ignore SIGINT, and Python then
    # keeps ignoring it: give the run the default disposition, as a terminal would.
    reset = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=reset)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(p.stat().st_size > 0 for p in tmp_path.glob(".out.*.jsonl")):
            time.sleep(0.1)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        publisher.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "summary:" in err and "Traceback" not in err
    frames = int(err.split("summary: ")[1].split()[0])
    assert frames > 0
    assert len(lines.read_text().splitlines()) == frames  # completed and moved into place
    assert (tmp_path / "out.avi").stat().st_size > 0
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("kind", ["json", "video"])
def test_an_output_a_full_disk_cuts_short_is_reported_and_not_kept(env, models, tmp_path, kind):
    """The kernel refuses writes past RLIMIT_FSIZE (EFBIG) as a full disk refuses them (ENOSPC)."""
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=40)
    out = tmp_path / ("faces.jsonl" if kind == "json" else "out.avi")
    flag = "--json-file" if kind == "json" else "--save"

    command = [sys.executable, "-m", "fer_edge", "run", "-s", str(video), "-m", str(models["int8"])]
    command += ["-d", "blazeface", "--no-show", flag, str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=small_disk(16_000))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    # The summary counts the faces of the frames it counts, not those of the frame the disk refused.
    frames, faces = map(int, re.search(r"summary: (\d+) frames .*?, (\d+) faces", proc.stderr).groups())
    assert 0 < faces <= 3 * frames, proc.stderr  # three faces a frame at most in this video
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {flag} {out}") and last.endswith("not kept"), last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no partial file, no temporary one


def test_when_a_full_disk_cuts_both_outputs_short_both_are_named(env, models, tmp_path):
    """Only the first failure was said: the user did not learn that the video was lost too."""
    video = moving_faces_video(env, tmp_path / "in.mp4", frames=40)
    command = [sys.executable, "-m", "fer_edge", "run", "-s", str(video), "-m", str(models["int8"])]
    command += [
        "-d",
        "blazeface",
        "--no-show",
        "--json-file",
        str(tmp_path / "f.jsonl"),
        "--save",
        str(tmp_path / "o.avi"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=small_disk(16_000))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: --json-file") and "; and --save" in last, (
        proc.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("command", ["predict", "run"])
def test_stdout_that_a_full_disk_cuts_short_is_named(env, models, tmp_path, command):
    """`--json > faces.jsonl` on a full disk said only "error: File too large" (or a traceback)."""
    faces = [f for _, f in shared_faces(env, per_class=3)]
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(faces):
        cv2.imwrite(str(folder / f"{i:02d}.png"), face)
    args = (
        ["predict", str(folder), "--crops"]
        if command == "predict"
        else ["run", "-s", str(folder), "--no-show"]
    )
    cli = [sys.executable, "-m", "fer_edge", *args, "-m", str(models["int8"]), "--json"]
    with open(tmp_path / "out.jsonl", "w") as stdout:
        proc = subprocess.run(
            cli, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=small_disk(1000)
        )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: cannot write to standard output (File too large); what it holds is cut short"
    )


def test_tracker_keeps_ids_and_smooths_scores():
    tracker = Tracker(smoothing=0.5)
    a, b = Box(0, 0, 50, 50), Box(200, 0, 50, 50)
    first = tracker.update([a, b], np.array([[1.0, 0.0], [0.0, 1.0]]))
    moved = tracker.update([Box(205, 2, 50, 50), Box(3, 1, 50, 50)], np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert [t.id for t in moved] == [first[1].id, first[0].id]
    assert np.allclose(moved[0].scores, [0.5, 0.5]) and np.allclose(moved[1].scores, [0.5, 0.5])
    for _ in range(6):
        tracker.update([], np.zeros((0, 2)))
    assert tracker.tracks == []
    assert tracker.update([a], np.array([[1.0, 0.0]]))[0].id not in (first[0].id, first[1].id)


def test_open_source_names(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "x.mp4"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty))


def test_a_stream_that_accepts_but_never_answers_fails_within_the_open_timeout(env, models):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever answers them
    port = silent.getsockname()[1]
    try:
        start = time.monotonic()
        result = invoke(
            "run", "-s", f"http://127.0.0.1:{port}/live", "-m", models["int8"], "--open-timeout", "1"
        )
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "no answer within 1 s" in result.stderr.strip().splitlines()[-1], result.stderr
    assert elapsed < 8

    # The same in a real process, where FFmpeg's own log lines would reach the terminal: only ours do.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/live"
    command = [sys.executable, "-m", "fer_edge", "run", "-s", url, "-m", str(models["int8"])]
    command += ["--open-timeout", "1"]
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        silent.close()
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 2, process.stderr
    assert lines[0].startswith("detector: ") and "no answer within 1 s" in lines[1]


def test_a_finite_video_served_over_http_ends_the_run_cleanly(env, models, tmp_path):
    import functools
    import http.server

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for i in range(12):
        writer.write(np.full((240, 320, 3), 20 * i, np.uint8))
    writer.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        result = invoke("run", "-s", url, "-m", models["int8"], "-d", "blazeface", "--json", "--no-show")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 12  # every frame once: read to its end, not replayed
    assert "summary: 12 frames" in result.stderr


def test_a_named_pipe_is_read_to_its_end_and_one_without_a_writer_times_out(env, models, tmp_path):
    video, pipe = tmp_path / "clip.avi", tmp_path / "pipe"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for i in range(12):
        writer.write(np.full((240, 320, 3), 20 * i, np.uint8))
    writer.release()
    os.mkfifo(pipe)
    feeder = threading.Thread(target=lambda: pipe.write_bytes(video.read_bytes()), daemon=True)
    feeder.start()
    result = invoke("run", "-s", pipe, "-m", models["int8"], "-d", "blazeface", "--json", "--no-show")
    feeder.join(10)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 12 and "summary: 12 frames" in result.stderr

    # Opening a pipe waits for its writer (as `ffmpeg ... > pipe` started after us): give up after
    # --open-timeout, with one line, instead of hanging.
    start = time.monotonic()
    result = invoke("run", "-s", pipe, "-m", models["int8"], "-d", "blazeface", "--open-timeout", "0.5")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "pipe: cannot open (no answer within 0.5 s" in result.stderr.strip().splitlines()[-1]
    assert time.monotonic() - start < 8
    # and the thread that waited on the pipe has ended: a long-lived app that retries leaks nothing
    assert not [t for t in threading.enumerate() if t.name == f"open {pipe}"]
