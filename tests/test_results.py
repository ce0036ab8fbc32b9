"""results/<chapter>.json: rounding, refusal of non-finite numbers, clear missing-file errors."""

import json
import math

import numpy as np
import pytest

from blender_lib.results import read_results, write_results


def test_results_are_rounded_and_read_back(tmp_path):
    write_results("03_demo", {"a": 1 / 3, "nested": {"b": [np.float32(0.123456789)]}}, results_dir=tmp_path)
    data = json.loads((tmp_path / "03_demo.json").read_text())
    assert data == {"a": 0.3333, "nested": {"b": [0.1235]}}
    assert read_results("03_demo", results_dir=tmp_path) == data


def test_non_finite_numbers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_results("03_demo", {"a": math.nan}, results_dir=tmp_path)


def test_missing_results_name_the_chapter_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebooks/05_zooter.ipynb"):
        read_results("05_zooter", results_dir=tmp_path)
    with pytest.raises(ValueError, match="stem"):
        write_results("a/b", {}, results_dir=tmp_path)
