"""FER2013 loading from CSV and folders, bad input, caching."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import small_disk, synthetic_faces, write_csv, write_folders
from fer_train import data
from fer_train.spec import CLASSES


def test_csv_and_folders_give_the_same_faces(tiny_csv, tiny_folders, tiny_splits):
    from_csv = data.load(tiny_csv, "train")
    from_dirs = data.load(tiny_folders, "train")
    images, labels = tiny_splits["train"]
    assert from_csv.images.dtype == np.uint8 and from_csv.images.shape == (len(labels), 48, 48)
    np.testing.assert_array_equal(from_csv.images, images)
    np.testing.assert_array_equal(from_csv.labels, labels)
    order = np.lexsort((from_dirs.images.reshape(len(labels), -1).sum(1), from_dirs.labels))
    expected = np.lexsort((images.reshape(len(labels), -1).sum(1), labels))
    np.testing.assert_array_equal(from_dirs.images[order], images[expected])
    assert from_csv.split == from_dirs.split == "Training"


def test_splits_and_aliases(tiny_csv, tiny_folders):
    assert len(data.load(tiny_csv, "test")) == 3 * len(CLASSES)
    assert data.load(tiny_folders, "PublicTest").split == "PublicTest"
    assert len(data.load(tiny_folders / "test", "test")) == 3 * len(CLASSES)  # a split folder given directly


def test_folder_class_names_are_case_insensitive_and_images_are_converted(tmp_path):
    import cv2

    folder = tmp_path / "fer" / "train" / "HAPPY"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "big_colour.jpg"), np.full((96, 120, 3), (10, 200, 30), np.uint8))
    (tmp_path / "fer" / "train" / "Sad").mkdir()
    cv2.imwrite(str(tmp_path / "fer" / "train" / "Sad" / "a.png"), np.zeros((48, 48), np.uint8))
    ds = data.load(tmp_path / "fer", "train")
    assert ds.images.shape == (2, 48, 48)
    assert sorted(ds.labels.tolist()) == [CLASSES.index("happy"), CLASSES.index("sad")]


def test_class_folders_named_as_other_fer2013_copies_name_them(tiny_folders, tiny_splits):
    """Kaggle's "Emotion Detection" copy names folders disgusted, fearful, surprised; image dumps of
    the CSV name them 0-6. Both were "unknown class folder"."""
    train = tiny_folders / "train"
    renamed = {"disgust": "disgusted", "fear": "fearful", "surprise": "surprised", "sad": "4"}
    for name, alias in renamed.items():
        (train / name).rename(train / alias)
    ds = data.load(tiny_folders, "train", cache=False)
    assert sorted(ds.labels.tolist()) == sorted(tiny_splits["train"][1].tolist())


@pytest.mark.parametrize(
    "row, message",
    [
        ("3,1 2 3,Training", "expected 2304 pixels, got 3"),
        ("9," + " ".join(["0"] * 2304) + ",Training", "emotion 9 is not a FER2013 label"),
        ("x," + " ".join(["0"] * 2304) + ",Training", "emotion 'x' is not an integer"),
        ("3," + " ".join(["a"] * 2304) + ",Training", "not an integer"),
        ("3," + " ".join(["300"] * 2304) + ",Training", "0-255"),
        ("3," + "1 " * 100_000 + ",Training", r"malformed CSV row \(field larger than field limit"),
        # A row without its Usage went into every split at once (a test face trained on), an empty one
        # into none, silently.
        ("3," + " ".join(["0"] * 2304), "no Usage value, so its split is unknown"),
        ("3," + " ".join(["0"] * 2304) + ", ", "no Usage value, so its split is unknown"),
    ],
)
def test_malformed_csv_rows_fail_with_file_and_row_or_are_skipped(tmp_path, tiny_splits, row, message):
    path = write_csv(tmp_path / "bad.csv", {"Training": tiny_splits["train"]})
    with open(path, "a") as f:
        f.write(row + "\n")
    bad_line = len(tiny_splits["train"][1]) + 2
    with pytest.raises(data.DataError, match=rf"bad.csv:{bad_line}: .*{message}"):
        data.load(path, "train")
    ds = data.load(path, "train", skip_bad=True)
    assert len(ds) == len(tiny_splits["train"][1])
    assert len(ds.skipped) == 1 and f"bad.csv:{bad_line}" in ds.skipped[0]


def test_millions_of_bad_rows_are_counted_but_only_the_first_hundred_kept(tmp_path, tiny_splits):
    """Each skipped row's description was kept: 3 million bad rows (51 MB) took 400 MB to report."""
    import tracemalloc

    path = write_csv(tmp_path / "bad.csv", {"Training": tiny_splits["train"]})
    with open(path, "a") as f:
        f.write("3,1 2 3,Training\n" * 200_000)
    tracemalloc.start()
    ds = data.load(path, "train", skip_bad=True, cache=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    first_bad = len(tiny_splits["train"][1]) + 2
    assert len(ds) == len(tiny_splits["train"][1]) and len(ds.skipped) == 200_000
    assert len(list(ds.skipped)) == 100 and f"bad.csv:{first_bad}: " in ds.skipped[0]
    assert peak < 8 << 20, f"{peak:,} bytes at the peak"  # 200,000 messages took 23 MB
    cached = data.load(path, "train", skip_bad=True)  # the count survives the cache
    assert len(data.load(path, "train", skip_bad=True).skipped) == len(cached.skipped) == 200_000


def test_a_truncated_or_oversized_training_image_is_refused_by_name(tiny_folders, monkeypatch):
    """Training images are read as fer-edge reads them: a cut JPEG is not a half-gray face, and an image
    over the pixel limit is refused from its header."""
    import cv2

    happy = tiny_folders / "train" / "happy"
    encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8))[1]
    (happy / "cut.jpg").write_bytes(encoded.tobytes()[: len(encoded) // 2])
    with pytest.raises(data.DataError, match="cut.jpg: unreadable image: a truncated JPEG"):
        data.load(tiny_folders, "train", cache=False)
    (happy / "cut.jpg").unlink()
    cv2.imwrite(str(happy / "big.png"), np.zeros((100, 100), np.uint8))
    from fer_edge import images

    monkeypatch.setattr(images, "max_pixels", 9999)  # what $FER_MAX_PIXELS or --max-pixels set
    with pytest.raises(data.DataError, match="big.png: unreadable image: 100x100 pixels, over the limit"):
        data.load(tiny_folders, "train", cache=False)
    monkeypatch.setenv("FER_MAX_PIXELS", "50M")  # not a number: said, not passed over for the default
    with pytest.raises(data.DataError, match=r"^\$FER_MAX_PIXELS='50M': give a positive whole number"):
        data.load(tiny_folders, "train", cache=False)


def test_unreadable_image_and_unknown_class_folder(tiny_folders):
    (tiny_folders / "train" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match="broken.jpg: unreadable image"):
        data.load(tiny_folders, "train")
    assert len(data.load(tiny_folders, "train", skip_bad=True).skipped) == 1
    (tiny_folders / "train" / "contempt").mkdir()
    with pytest.raises(data.DataError, match="contempt: unknown class folder"):
        data.load(tiny_folders, "train")


def test_other_tools_hidden_files_and_folders_are_not_faces(tiny_folders):
    """Jupyter's .ipynb_checkpoints/ stopped training as an 'unknown class folder'; macOS's ._face.png
    (AppleDouble metadata, not an image) as an 'unreadable image'."""
    faces = len(data.load(tiny_folders, "train", cache=False))
    (tiny_folders / "train" / ".ipynb_checkpoints").mkdir()
    (tiny_folders / "train" / "happy" / "._face.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tiny_folders / "train" / "happy" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert len(data.load(tiny_folders, "train", cache=False)) == faces


def test_empty_split_missing_split_and_not_a_csv(tmp_path):
    (tmp_path / "fer" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(data.DataError, match="holds no usable faces"):
        data.load(tmp_path / "fer", "train")
    with pytest.raises(data.DataError, match=r"no folder for split 'private' \(found train\)$"):
        data.load(tmp_path / "fer", "private")
    # A folder that is not FER2013 (a home folder): a few of its folders named, not every one.
    for name in [".cache", *(f"dir{i:02}" for i in range(40))]:
        (tmp_path / "home" / name).mkdir(parents=True)
    found = r"\(found dir00, dir01, dir02, dir03, dir04, dir05, dir06, dir07 and 32 more\)$"
    with pytest.raises(data.DataError, match=f"no folder for split 'test' {found}"):
        data.load(tmp_path / "home", "test")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(data.DataError, match="not a FER2013 CSV"):
        data.load(tmp_path / "x.csv", "train")
    with pytest.raises(data.DataError, match="no such file"):
        data.load(tmp_path / "missing.csv", "train")


def test_a_csv_without_the_split_asked_for_says_which_it_has(tmp_path):
    pixels = " ".join(["128"] * 48 * 48)
    train_only = tmp_path / "train.csv"  # Kaggle's challenge file: no Usage column
    train_only.write_text("emotion,pixels\n" + "".join(f"{i % 7},{pixels}\n" for i in range(7)))
    assert len(data.load(train_only, "train", cache=False)) == 7
    with pytest.raises(data.DataError, match="no Usage column, so every row is Training"):
        data.load(train_only, "test", cache=False)
    other = tmp_path / "other.csv"
    other.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{pixels},Val\n" for i in range(7)))
    with pytest.raises(data.DataError, match="split PublicTest holds no faces .the Usage column names Val"):
        data.load(other, "test", cache=False)
    # A spreadsheet's case of the split names (publictest, TRAINING) is the same split.
    lower = tmp_path / "lower.csv"
    lower.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{pixels},publictest\n" for i in range(7)))
    assert len(data.load(lower, "test", cache=False)) == 7


def test_cache_is_used_and_invalidated_when_the_source_changes(tiny_folders, tiny_splits):
    first = data.load(tiny_folders, "train")
    assert list(data.cache_dir().glob("fer-*.npz")), "the split was cached"
    again = data.load(tiny_folders, "train")
    np.testing.assert_array_equal(first.images, again.images)
    extra = synthetic_faces(1, seed=9)
    write_folders(tiny_folders / "more", {"train": extra})
    import shutil

    shutil.copy(
        next((tiny_folders / "more" / "train" / "angry").iterdir()),
        tiny_folders / "train" / "angry" / "new.png",
    )
    assert len(data.load(tiny_folders, "train")) == len(first) + 1


@pytest.mark.parametrize(
    "wrong",
    [
        {"images": np.zeros((3, 16, 16), np.uint8)},
        {"labels": np.full(3, 9)},
        {"labels": np.zeros(5, np.int64)},
    ],
)
def test_a_wrong_cache_is_rebuilt_not_trained_on(tiny_folders, tmp_path, monkeypatch, wrong):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    first = data.load(tiny_folders, "train")
    (cached,) = data.cache_dir().glob("fer-*.npz")
    content = {"images": first.images[:3], "labels": first.labels[:3], "skipped": "[]", **wrong}
    with open(cached, "wb") as f:  # np.savez adds .npz to a path that lacks it
        np.savez(f, **content)
    again = data.load(tiny_folders, "train")
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)


def test_a_cache_from_before_skipped_items_were_counted_still_loads(tiny_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    first = data.load(tiny_folders, "train")
    (cached,) = data.cache_dir().glob("fer-*.npz")
    with open(cached, "wb") as f:  # the skipped items as a plain list, as the cache held them
        np.savez(f, images=first.images, labels=first.labels, skipped='["x.png: unreadable image"]')
    again = data.load(tiny_folders, "train")
    assert len(again.skipped) == 1 and again.skipped[0] == "x.png: unreadable image"
    np.testing.assert_array_equal(again.images, first.images)


def test_a_cache_a_full_disk_refuses_is_skipped_and_leaves_nothing(tiny_folders, tmp_path):
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    code = "import sys; from fer_train import data; print(len(data.load(sys.argv[1], 'train')))"
    env = {**os.environ, "FER_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", code, str(tiny_folders)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=small_disk(4000))
    faces = len(data.load(tiny_folders, "train", cache=False))
    assert proc.returncode == 0 and proc.stdout.strip() == str(faces), proc.stderr
    assert "note: could not write the data cache" in proc.stderr
    assert list((cache / "data").iterdir()) == []  # no partial cache file left behind


def test_a_csv_with_a_byte_order_mark_loads(tmp_path, tiny_splits):
    path = write_csv(tmp_path / "excel.csv", {"Training": tiny_splits["train"]})
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(data.load(path, "train")) == len(tiny_splits["train"][1])


def test_blank_lines_in_a_csv_are_not_faces(tmp_path, tiny_splits):
    path = write_csv(tmp_path / "edited.csv", {"Training": tiny_splits["train"]})
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\n", 2) + b"\n\n")
    ds = data.load(path, "train", cache=False)
    assert sorted(ds.labels.tolist()) == sorted(tiny_splits["train"][1].tolist()) and not ds.skipped


@pytest.mark.parametrize(
    "content, message",
    [
        (b'emotion,pixels,Usage\n3,"1 2 3,Training\n' + b"x" * 200_000, "malformed CSV"),
        (b'emotion,pixels,Usage\n3,"1 2 3,Training\n4,1 2 3,Training\n', ":2: a quote opened on this row"),
        (b"emotion,pixels,Usage\n3,\xff\xfe 1 2,Training\n", "not a text CSV in UTF-8"),
    ],
    ids=["unbalanced quote", "unbalanced quote, short file", "not utf-8"],
)
def test_broken_csv_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=message) as error:
        data.load(path, "train")
    assert str(path) in str(error.value)


def test_an_image_or_a_device_as_data_is_refused_by_name(tmp_path):
    import cv2

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.zeros((48, 48), np.uint8))
    with pytest.raises(data.DataError, match="face.png: an image; FER2013 data is its CSV or a folder"):
        data.load(image, "train")
    with pytest.raises(data.DataError, match="/dev/null: not a file or folder"):
        data.load("/dev/null", "train")


def test_a_broken_symlink_is_skipped_and_an_empty_class_folder_warned(tiny_folders, capsys):
    (tiny_folders / "train" / "happy" / "gone.png").symlink_to(tiny_folders / "nowhere.png")
    gone = r"gone.png: unreadable image: a broken link \(its target is gone\)"
    with pytest.raises(data.DataError, match=gone):
        data.load(tiny_folders, "train", cache=False)
    ds = data.load(tiny_folders, "train", skip_bad=True, cache=False)
    assert len(ds.skipped) == 1 and "gone.png" in ds.skipped[0]
    for face in (tiny_folders / "train" / "disgust").iterdir():
        face.unlink()
    data.load(tiny_folders, "train", skip_bad=True, cache=False)
    assert "disgust: no images in this class folder" in capsys.readouterr().err


def test_a_damaged_training_jpeg_is_one_warning_naming_it(tiny_folders):
    """The loader's threads decoded a damaged JPEG with libjpeg's own line on stderr, naming no file."""
    import subprocess
    import sys

    import cv2

    ok, encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8))
    damaged = tiny_folders / "train" / "sad" / "damaged.jpg"
    damaged.write_bytes(encoded.tobytes()[: len(encoded) // 2] + b"\xff\xd9")
    code = "import sys; from fer_train import data; print(len(data.load(sys.argv[1], 'train', cache=False)))"
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_folders)], capture_output=True, text=True)
    faces = len(data.load(tiny_folders, "train", cache=False))
    assert proc.returncode == 0 and proc.stdout.strip() == str(faces), proc.stderr
    assert "Corrupt JPEG data" not in proc.stderr, proc.stderr
    why = "damaged JPEG data (premature end of data segment); decoded as far as it goes"
    assert proc.stderr.splitlines() == [f"warning: {damaged}: {why}"], proc.stderr


def test_a_damaged_training_png_is_skipped_with_no_libpng_line(tiny_folders):
    """With --skip-bad, libpng's own line for the file ("libpng error: ...", naming none) reached stderr."""
    import subprocess
    import sys

    import cv2

    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8))
    damaged = tiny_folders / "train" / "sad" / "damaged.png"
    damaged.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    code = "import sys; from fer_train import data\n"
    code += "print(list(data.load(sys.argv[1], 'train', cache=False, skip_bad=True).skipped))"
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_folders)], capture_output=True, text=True)
    assert proc.returncode == 0 and "libpng" not in proc.stderr, proc.stderr
    assert f"{damaged}: unreadable image: not an image OpenCV can read" in proc.stdout
