"""Where the face detector's model file comes from, and `fer-edge models fetch` that downloads it.

Lookup order: an explicit path (--detector-model), the FER_DETECTOR_MODEL environment variable, the
cache folder ($XDG_CACHE_HOME or ~/.cache, then fer-toolkit/models), then the copy bundled in the
package (edge/detector/, Apache-2.0), so detection works offline out of the box. The bundled copy is the
same network without the Tasks metadata (edge/detector/README.md says where it comes from). Downloads
are checked against a pinned SHA-256, so a changed or truncated file is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fer_edge.errors import DetectorError, EdgeError, not_a_model_file

ENV_MODEL = "FER_DETECTOR_MODEL"


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    url: str
    sha256: str
    size: int


BLAZE_FACE = ModelFile(
    name="blaze_face_short_range",
    filename="blaze_face_short_range.tflite",
    url=(
        "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/"
        "float16/latest/blaze_face_short_range.tflite"
    ),
    sha256="b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
    size=229746,
)
# MediaPipe's legacy copy of the same network (identical weights and outputs), from the mediapipe 0.10.14
# wheel on PyPI: what the package ships in edge/detector/.
BUNDLED_FILENAME = "face_detection_short_range.tflite"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fer-toolkit" / "models"


def find_detector_model(explicit: str | Path | None = None) -> Path | None:
    """The BlazeFace model to use, or None when there is none anywhere (an explicit path must exist)."""
    if explicit:
        path = Path(explicit).expanduser()
        if why := not_a_model_file(path, "BlazeFace .tflite", missing="no such face detector model"):
            raise DetectorError(f"{why} (--detector-model)")
        return path
    env = os.environ.get(ENV_MODEL)
    if env:
        path = Path(env).expanduser()
        if why := not_a_model_file(path, "BlazeFace .tflite", missing="no such face detector model"):
            raise DetectorError(f"{why} (from ${ENV_MODEL})")
        return path
    cached = cache_dir() / BLAZE_FACE.filename
    if cached.is_file():
        return cached
    return bundled_detector_model()


def bundled_detector_model() -> Path | None:
    """The BlazeFace model shipped inside the package; None if a trimmed install left it out."""
    path = Path(__file__).resolve().parent / "detector" / BUNDLED_FILENAME
    return path if path.is_file() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


URL_SCHEMES = ("https://", "http://", "file://")  # file://: a mirror on a USB stick or a share


def fetch(
    model: ModelFile = BLAZE_FACE,
    dest_dir: Path | None = None,
    url: str | None = None,
    force: bool = False,
    timeout: float = 30.0,
    progress=None,
) -> tuple[Path, bool]:
    """Download `model` into the cache (or `dest_dir`); returns its path and whether it was downloaded.

    A file already there with the pinned hash is kept. The download goes to a temporary file that
    replaces the target only once its SHA-256 matches.
    """
    if url is not None and not url.lower().startswith(URL_SCHEMES):
        raise EdgeError(f"--url {url}: not a URL this can download ({', '.join(URL_SCHEMES)})")
    dest_dir = Path(dest_dir) if dest_dir else cache_dir()
    target = dest_dir / model.filename
    if dest_dir.exists() and not dest_dir.is_dir():
        raise EdgeError(f"--dest {dest_dir}: a file, not a folder")
    if target.is_file():
        if sha256_of(target) != model.sha256:
            # Downloads land whole and checked or not at all, so another file of that name is not one
            # this tool wrote: kept, even with --force.
            raise EdgeError(
                f"{target}: another file by that name is there (not the pinned model); kept even with "
                "--force: move it away, or fetch into another --dest"
            )
        if not force:
            return target, False
    made = [p for p in (dest_dir, *dest_dir.parents) if not p.exists()]  # deepest first
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".part", dir=dest_dir)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url or model.url, out, timeout, progress, model.size)
        got = sha256_of(tmp_path)
        if got != model.sha256:
            raise EdgeError(
                f"{url or model.url}: downloaded file has SHA-256 {got[:16]}..., "
                f"expected {model.sha256[:16]}...; not using it"
            )
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
            for folder in made:  # a failed download leaves no folders it made either
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return target, True


def _download(url: str, out, timeout: float, progress, size: int) -> None:
    """Write what `url` serves to `out`; an error once it is longer than the pinned model's `size`
    (a wrong or endless answer would otherwise fill the disk before the hash could say so)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            if progress:
                progress(0, total)
            done = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                done += len(chunk)
                if done > size:
                    raise EdgeError(f"{url}: more than the model's {size:,} bytes; not using it")
                out.write(chunk)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as err:
        raise EdgeError(f"{url}: download failed (HTTP {err.code} {err.reason})") from err
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise EdgeError(f"{url}: download failed ({reason}); are you online?") from err
