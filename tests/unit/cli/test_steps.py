"""The step commands (`visearch preprocess`, `train`, ...) as a user runs them: bad data and bad
parameters are one `error:` line."""

from __future__ import annotations

from tests.helpers import TINY, assert_one_line_error, visearch
from visearch.settings import Settings


def test_preprocess_reports_missing_meta_column(home: Settings) -> None:
    meta = home.objects_dir / "datasets" / TINY / "meta.csv"
    meta.write_text(",file,label\n0,a.png,0\n")
    assert_one_line_error(visearch(home, "preprocess", "-c", TINY), "lacks column(s) class")


def test_train_rejects_bad_parameters(home: Settings) -> None:
    assert_one_line_error(visearch(home, "train", "-c", TINY, "--batch-size", "1"), "invalid training parameter")
