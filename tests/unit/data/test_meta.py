"""The meta CSV contract: the seed format round-trips, unusable files and rows are clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from visearch.data.meta import DataReport, check_rows, parse_meta, write_meta
from visearch.errors import DataError


def test_meta_round_trip_keeps_seed_format() -> None:
    frame = pd.DataFrame({"file": ["a.png", "b.png"], "class": ["x", "y"], "label": [0, 1], "caption": ["c1", "c2"]})
    data = write_meta(frame)
    assert data.decode().splitlines()[0] == ",file,class,label,caption"
    parsed = check_rows(parse_meta(data), DataReport())
    assert parsed.to_dict("list") == frame.to_dict("list")


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (b"", "empty"),
        (b",file,class\n0,a.png,x\n", r"lacks column\(s\) label"),
    ],
)
def test_meta_unusable_files_are_clear_errors(csv: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_meta(csv)


def test_check_rows_reports_duplicates_mismatch_and_traversal() -> None:
    frame = parse_meta(
        b",file,class,label\n0,a.png,x,0\n1,a.png,x,0\n2,b.png,x,0\n3,c.png,x,5\n4,../../etc/passwd,y,1\n5,d.png,y,1\n"
    )
    report = DataReport()
    kept = check_rows(frame, report)
    assert kept["file"].tolist() == ["a.png", "b.png", "d.png"]
    reasons = dict(report.dropped)
    assert reasons["a.png"] == "duplicate file: an earlier row names the same file"
    assert reasons["c.png"] == "label mismatch: label 5 but class 'x' has label 0"
    assert reasons["../../etc/passwd"].startswith("path outside the folder")


def test_a_label_shared_by_two_classes_costs_the_smaller_class_its_rows() -> None:
    frame = parse_meta(b",file,class,label\n0,a.png,x,0\n1,b.png,y,0\n2,c.png,x,0\n3,d.png,z,1\n")
    report = DataReport()
    kept = check_rows(frame, report)
    assert kept["file"].tolist() == ["a.png", "c.png", "d.png"]
    assert report.dropped == [("b.png", "label shared: label 0 of class 'y' belongs to class 'x'")]
