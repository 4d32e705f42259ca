"""`fer-bench training`: training throughput per architecture, as a well-formed table."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fer_bench.cli import app
from fer_bench.training import parse_variants


def test_variants_parse_with_builder_options():
    assert parse_variants("cnn,cnn:width=0.5:first_kernel=3") == [
        ("cnn", {}),
        ("cnn", {"width": 0.5, "first_kernel": 3}),
    ]
    with pytest.raises(ValueError, match="cnn:width=abc: builder options are NAME=NUMBER"):
        parse_variants("cnn:width=abc")


def test_training_throughput_table(tmp_path):
    args = ["training", "--variants", "cnn:width=0.125,cnn:width=0.25", "--batch-size", "8", "--batches", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "training.json").read_text())
    assert [r["model"] for r in doc["results"]] == ["cnn width=0.125", "cnn width=0.25"]
    small, large = doc["results"]
    assert small["parameters"] < large["parameters"]
    assert all(r["images_per_second"] > 0 for r in doc["results"])
    assert "| cnn width=0.25 |" in (tmp_path / "training.md").read_text()
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.output
