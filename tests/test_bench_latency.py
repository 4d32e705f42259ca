"""fer-bench latency on real tiny models through the real LiteRT interpreter: the report's numbers
must be well-formed and consistent with each other; no timing is compared with a bound."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bench_helpers import read_json, relabel, run_cli, tiny_models

from fer_bench import latency
from fer_bench.errors import BenchError
from fer_bench.models import describe_models

RUNS = 40


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def result(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("latency")
    folder = models["fp32"].parent
    proc = run_cli(
        "latency",
        "--models",
        str(folder),
        "--threads",
        "1,2",
        "--runs",
        str(RUNS),
        "--warmup",
        "3",
        "--batch",
        "4",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    return read_json(out / "latency.json"), proc


def assert_consistent(r: dict, runs: int) -> None:
    m = r["latency_ms"]
    assert 0 < m["min"] <= m["p50"] <= m["p90"] <= m["p99"] <= m["max"]
    assert m["min"] <= m["mean"] <= m["max"]
    samples = np.asarray(r["samples_ms"])
    assert len(samples) == runs
    assert np.percentile(samples, 50) == pytest.approx(m["p50"], rel=1e-3, abs=1e-3)
    assert r["throughput_fps"] == pytest.approx(1000 * runs / samples.sum(), rel=1e-2)
    assert r["batch_throughput_fps"] > 0
    mem = r["memory_mb"]
    assert mem["peak"] >= mem["baseline"] > 0 and mem["delta"] == pytest.approx(mem["peak"] - mem["baseline"])


def test_every_model_and_thread_count_is_measured(result, models):
    doc, proc = result
    keys = {m["key"] for m in doc["models"]}
    assert keys == {"tiny_fp32", "tiny_int8"}
    assert sorted((r["model"], r["threads"]) for r in doc["results"]) == sorted(
        (k, t) for k in keys for t in (1, 2)
    )
    sizes = {m["key"]: m["size_bytes"] for m in doc["models"]}
    assert sizes == {"tiny_fp32": models["fp32"].stat().st_size, "tiny_int8": models["int8"].stat().st_size}
    variants = {m["key"]: m["variant"] for m in doc["models"]}
    assert variants == {"tiny_fp32": "fp32", "tiny_int8": "int8"}
    for r in doc["results"]:
        assert r["size_bytes"] == sizes[r["model"]]
        assert_consistent(r, RUNS)
    assert "tiny_int8" in proc.stdout and "p50" in proc.stdout  # the table a user reads


def test_report_states_the_machine_and_settings(result):
    doc, _ = result
    machine = doc["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["python"].split()[-1].count(".") == 2
    assert "ai-edge-litert" in machine["libraries"] and "numpy" in machine["libraries"]
    assert doc["settings"]["threads"] == [1, 2] and doc["settings"]["runs"] == RUNS
    assert "VmHWM" in doc["memory_method"]
    assert doc["command"].startswith("fer-bench latency")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_pinned_in_process_run_restores_the_affinity(models):
    before = os.sched_getaffinity(0)
    core = min(before)
    entries = describe_models([models["int8"]])
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    settings = latency.Settings(runs=10, warmup=1, batch=2, pin_core=core)
    results = latency.run(entries, [1], faces, settings, isolate=False)
    assert os.sched_getaffinity(0) == before
    assert len(results) == 1
    assert_consistent(results[0], 10)


def test_isolated_and_in_process_give_the_same_shape_of_result(models):
    entries = describe_models([models["fp32"]])
    faces = np.zeros((2, 48, 48), np.uint8)
    settings = latency.Settings(runs=5, warmup=0, batch=2)
    (here,) = latency.run(entries, [1], faces, settings, isolate=False)
    (there,) = latency.run(entries, [1], faces, settings, isolate=True)
    assert set(here) == set(there)
    assert here["memory_method"] != there["memory_method"]


def test_parse_threads():
    assert latency.parse_threads("1,2,4") == [1, 2, 4]
    assert latency.parse_threads("2, 2,1") == [2, 1]


def error_line(proc) -> str:
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines and lines[-1].startswith("error:"), proc.stderr
    return lines[-1]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threads", "1,x"], "--threads"),
        (["--threads", "0"], "--threads"),
        (["--pin-core", "4096"], "--pin-core"),
    ],
)
def test_bad_options_end_in_one_error_line(models, tmp_path, args, words):
    proc = run_cli("latency", "-m", str(models["int8"]), "--runs", "2", "--out", str(tmp_path), *args)
    assert words in error_line(proc)
    assert not (tmp_path / "latency.json").exists()
    # With a result already there, the mistyped option is still what is named (not "use --force").
    (tmp_path / "latency.json").write_text('{"kind": "fer-bench/latency", "results": []}')
    proc = run_cli("latency", "-m", str(models["int8"]), "--runs", "2", "--out", str(tmp_path), *args)
    assert words in error_line(proc)


def test_runs_and_batch_are_bounded_before_anything_is_allocated(models, tmp_path):
    """--batch 1000000000 was a 2 TiB allocation and a MemoryError traceback; a billion runs, 8 GB of
    samples before the first call."""
    for flag, value in (("--batch", "1000000000"), ("--runs", "1000000000")):
        proc = run_cli("latency", "-m", str(models["int8"]), flag, value, "--out", str(tmp_path))
        assert (
            proc.returncode == 2 and "Traceback" not in proc.stderr and "less than or equal to" in proc.stderr
        )
    entry = describe_models([models["int8"]])[0]
    with pytest.raises(BenchError, match="runs 1 to 100,000"):
        latency.run([entry], [1], np.zeros((1, 48, 48), np.uint8), latency.Settings(runs=10**9))


def test_missing_and_corrupt_models_end_in_one_error_line(tmp_path):
    proc = run_cli("latency", "-m", str(tmp_path / "nope.tflite"), "--out", str(tmp_path))
    assert "nope.tflite" in error_line(proc)
    # With results already there, the mistyped model is still what is named (not "use --force").
    for name in ("latency.json", "accuracy.json", "pipeline.json"):
        (tmp_path / name).write_text('{"kind": "fer-bench/latency", "results": []}')
    for command in (["latency"], ["accuracy", "--data", str(tmp_path)], ["pipeline", "--source", "x.avi"]):
        proc = run_cli(*command, "-m", "nope", "--out", str(tmp_path))
        assert "nope: no such model file or shipped model" in error_line(proc), command
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(os.urandom(2000))
    proc = run_cli("latency", "-m", str(bad), "--out", str(tmp_path))
    assert "bad.tflite" in error_line(proc)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("latency", "-m", str(empty), "--out", str(tmp_path))
    assert "no .tflite" in error_line(proc)


def test_a_model_with_other_classes_is_refused(models, tmp_path):
    other = relabel(models["int8"], tmp_path / "cats.tflite", [f"cat{i}" for i in range(7)])
    proc = run_cli("latency", "-m", str(other), "--runs", "2", "--out", str(tmp_path))
    assert "FER2013's seven classes" in error_line(proc)


def test_existing_results_are_kept_without_force(models, tmp_path):
    target = tmp_path / "latency.json"
    old = '{"kind": "fer-bench/latency", "results": []}'
    target.write_text(old)
    proc = run_cli(
        "latency", "-m", str(models["int8"]), "--runs", "2", "--threads", "1", "--out", str(tmp_path)
    )
    assert "--force" in error_line(proc)
    assert target.read_text() == old
    proc = run_cli(
        "latency",
        "-m",
        str(models["int8"]),
        "--runs",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "--force",
    )
    assert proc.returncode == 0, proc.stderr
    assert read_json(target)["kind"] == "fer-bench/latency"


def test_a_full_disk_for_the_measuring_processes_faces_is_one_named_line(models, tmp_path):
    """The isolated workers read the faces from a temporary file; a full disk there was an unnamed
    "73728 requested and 1872 written"."""
    from conftest import small_disk

    args = ["latency", "-m", str(models["int8"]), "--runs", "2", "--out", str(tmp_path)]
    proc = run_cli(*args, preexec_fn=small_disk(2000))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write the faces to measure with" in error_line(proc) and "--in-process" in error_line(proc)


def test_shipped_models_are_taken_by_name_as_fer_edge_takes_them(tmp_path):
    from fer_models import shipped

    nano = shipped("nano")
    if nano is None:
        pytest.skip("the nano model is not shipped in this checkout")
    proc = run_cli("latency", "--models", "nano", "--threads", "1", "--runs", "3", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (r,) = read_json(tmp_path / "latency.json")["results"]
    assert r["model"] == nano.stem and r["size_bytes"] == nano.stat().st_size, r
    proc = run_cli("latency", "--models", "nanoo", "--out", str(tmp_path / "x" / "y"))
    assert proc.returncode == 2 and "nanoo: no such model file or shipped model (default, " in proc.stderr
    assert not (tmp_path / "x").exists()  # a failed run leaves no empty folders, parents included


def test_a_results_folder_another_fer_bench_is_writing_to_is_left_alone(models, tmp_path):
    from conftest import held_folder

    out = tmp_path / "r"
    args = ["latency", "-m", str(models["int8"]), "--threads", "1", "--runs", "2", "--out", str(out)]
    with held_folder(out):
        assert "another fer-bench is writing here" in error_line(run_cli(*args))
        assert not (out / "latency.json").exists()
    assert run_cli(*args).returncode == 0 and (out / "latency.json").is_file()
    proc = run_cli(*args[:-1], str(out / "latency.json"))  # --out names a file, not a folder
    assert "latency.json: not a folder; give a folder" in error_line(proc)
