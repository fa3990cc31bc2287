"""Labels in the meta CSV are whole numbers: a fractional label is a bad row, never cut to an integer."""

from __future__ import annotations

from visearch.data.meta import DataReport, check_rows, parse_meta


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
