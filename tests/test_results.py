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


def test_small_numbers_keep_two_significant_digits_instead_of_rounding_to_zero(tmp_path):
    write_results("03_demo", {"lr": 5e-05, "tiny": -1.23e-07, "edge": 0.00123456, "zero": 0.0}, results_dir=tmp_path)
    assert read_results("03_demo", results_dir=tmp_path) == {"lr": 5e-05, "tiny": -1.2e-07, "edge": 0.0012, "zero": 0.0}


def test_an_undefined_table_cell_is_stored_as_null_and_only_through_table_records(tmp_path):
    import pandas as pd

    from blender_lib.results import rows_by_id, table_records

    table = pd.DataFrame({"pearson": [0.5, math.nan]}, index=["pairranker:max_logits", "constant"])
    write_results("03_demo", {"table": table_records(table)}, results_dir=tmp_path)
    assert read_results("03_demo", results_dir=tmp_path)["table"] == {
        "pairranker:max_logits": {"pearson": 0.5}, "constant": {"pearson": None}}
    with pytest.raises(ValueError, match="non-finite"):
        write_results("03_demo", {"table": table.to_dict(orient="index")}, results_dir=tmp_path)
    labels = {"pairranker:max_logits": "PairRanker (max-logits)", "constant": "a constant ranker"}
    assert rows_by_id(table, labels)["pairranker:max_logits"] == {"label": "PairRanker (max-logits)", "pearson": 0.5}
    with pytest.raises(KeyError, match=r"no label for selector id\(s\) \['constant'\]"):
        rows_by_id(table, {"pairranker:max_logits": "PairRanker"})


def test_non_finite_numbers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_results("03_demo", {"a": math.nan}, results_dir=tmp_path)


def test_missing_results_name_the_chapter_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebooks/05_zooter.ipynb"):
        read_results("05_zooter", results_dir=tmp_path)
    with pytest.raises(ValueError, match="stem"):
        write_results("a/b", {}, results_dir=tmp_path)
