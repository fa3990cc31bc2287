"""The meta CSV's rules, each one reported: labels are whole numbers (a fractional label is a bad row, never
cut to an integer); every dropped row is named with its reason; unusable files are one clear error.

The tests after the label tests kill the mutants of ``visearch/data/meta.py`` that outlived the older
fast tests (benchmarks/results/mutation.md).
"""

from __future__ import annotations

import pytest

from visearch.data.meta import DataReport, check_rows, parse_meta
from visearch.errors import DataError


def test_fractional_labels_are_rejected_with_one_report_line_per_row() -> None:
    # Cut to integers, 0.5 and 1.5 would be 0 and 1: the labels of their classes, kept without a word.
    frame = parse_meta(
        b",file,class,label\n0,a.png,x,0\n1,b.png,x,0.5\n2,c.png,y,1\n3,d.png,y,1.5\n4,e.png,y,1.0\n5,f.png,x, 0 \n"
    )
    report = DataReport()
    kept = check_rows(frame, report)
    assert kept["file"].tolist() == ["a.png", "c.png", "e.png", "f.png"]
    assert kept["label"].tolist() == [0, 1, 1, 0]  # "1.0" and " 0 " are whole numbers
    assert report.dropped == [
        ("b.png", "bad label: '0.5' is not an integer"),
        ("d.png", "bad label: '1.5' is not an integer"),
    ]
    assert (report.total, dict(report.reasons())) == (6, {"bad label": 2})
    summary = report.summary()
    assert "  dropped b.png: bad label: '0.5' is not an integer" in summary
    assert "  dropped d.png: bad label: '1.5' is not an integer" in summary


def test_words_and_empty_labels_are_bad_labels_too() -> None:
    frame = parse_meta(b",file,class,label\n0,a.png,x,0\n1,b.png,x,zero\n2,c.png,x,\n3,d.png,x,-0.25\n")
    report = DataReport()
    assert check_rows(frame, report)["file"].tolist() == ["a.png"]
    assert report.dropped == [
        ("b.png", "bad label: 'zero' is not an integer"),
        ("c.png", "bad label: '' is not an integer"),
        ("d.png", "bad label: '-0.25' is not an integer"),
    ]


def test_a_row_without_a_file_is_named_by_its_row_and_one_without_a_class_by_its_file() -> None:
    frame = parse_meta(b",file,class,label\n0,a.png,x,0\n1,,x,0\n2,c.png,,0\n3, ,x,0\n")
    report = DataReport()
    assert check_rows(frame, report)["file"].tolist() == ["a.png"]
    assert report.dropped == [
        ("row 1", "empty file name: the row names no image"),
        ("row 3", "empty file name: the row names no image"),
        ("c.png", "empty class: the row has no class"),
    ]


def test_a_shared_label_stays_with_the_larger_class_whatever_the_names() -> None:
    frame = parse_meta(b",file,class,label\n0,b1.png,b,0\n1,z1.png,z,0\n2,z2.png,z,0\n")
    report = DataReport()
    assert check_rows(frame, report)["file"].tolist() == ["z1.png", "z2.png"]
    assert report.dropped == [("b1.png", "label shared: label 0 of class 'b' belongs to class 'z'")]


def test_reasons_are_grouped_by_the_text_before_the_first_colon() -> None:
    report = DataReport()
    check_rows(parse_meta(b",file,class,label\n0,a.png,x,1:2\n1,b.png,x,0\n"), report)
    assert dict(report.reasons()) == {"bad label": 1}


def test_the_summary_lists_kinds_then_the_first_dropped_files_and_counts_the_rest() -> None:
    report = DataReport(total=23, kept=2)
    for n in range(20):
        report.drop(f"{n}.png", "bad label: 'x' is not an integer")
    assert report.summary().splitlines()[-1] == "  dropped 19.png: bad label: 'x' is not an integer"  # 20: all shown
    report.drop("20.png", "empty class: the row has no class")
    lines = report.summary().splitlines()
    assert lines[:3] == ["2 of 23 images kept, 21 dropped", "      20  bad label", "       1  empty class"]
    assert lines[3] == "  dropped 0.png: bad label: 'x' is not an integer" and len(lines) == 3 + 20 + 1
    assert lines[-1] == "  ... and 1 more (the JSON report lists all)"
    assert report.to_dict() == {
        "total": 23,
        "kept": 2,
        "reasons": {"bad label": 20, "empty class": 1},
        "dropped": [{"file": file, "reason": reason} for file, reason in report.dropped],
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b",file,class,label\n0,\xff.png,x,0\n", "meta.csv is not UTF-8 text (byte 20): save it as UTF-8 CSV"),
        (b',file,class,label\n0,"a.png,x,0\n', "meta.csv is not a readable CSV: Error tokenizing data"),
        (
            b",file\n0,a.png\n",
            "meta.csv lacks column(s) class, label (the header must name file, class and label, after an unnamed index column)",
        ),
        (
            b"file;class;label\na.png;x;0\n",
            "meta.csv lacks column(s) file, class, label: the header is separated by ';'",
        ),
        (
            b"file\tclass\tlabel\na.png\tx\t0\n",
            "meta.csv lacks column(s) file, class, label: the header is separated by tab;",
        ),
        # Only ';', tab and '|' are named as the wrong delimiter; any other header gets the general hint.
        (
            b"file class label\na.png x 0\n",
            "meta.csv lacks column(s) file, class, label (the header must name file, class and label",
        ),
        (
            b"file;class\na.png;x\n",
            "meta.csv lacks column(s) file, class, label (the header must name file, class and label",
        ),
    ],
)
def test_unusable_files_are_one_error_that_says_what_to_fix(data: bytes, message: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_meta(data)
    assert str(caught.value).startswith(message), str(caught.value)
