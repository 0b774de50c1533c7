"""The shared reader/validator (benchmark.data.records) on the formats the task data uses:
JSON Lines, CSV/TSV with a header, and the typed field access."""

from __future__ import annotations

import pytest

from benchmark.core.errors import DataError
from benchmark.data.records import Record, read_csv_records, read_jsonl_records, take


def test_jsonl_skips_blank_lines_and_stops_at_first_n(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{broken\n', encoding="utf-8")
    assert read_jsonl_records(path, first_n=2) == [{"a": 1}, {"a": 2}]  # the bad line is not read
    with pytest.raises(DataError) as info:
        read_jsonl_records(path)
    assert info.value.record == 3 and "invalid JSON" in str(info.value)


def test_csv_header_and_row_width_are_checked(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text('index\tsentence1\tsentence2\tlabel\n0\t"quoted" start\tb\tentailment\n1\tonly\n',
                    encoding="utf-8")
    cols = ("index", "sentence1", "sentence2", "label")
    rows = read_csv_records(path, columns=cols, delimiter="\t", first_n=1)
    assert rows == [{"index": "0", "sentence1": "quoted start", "sentence2": "b", "label": "entailment"}]
    with pytest.raises(DataError, match="expected 4 tab-separated fields, got 2") as info:
        read_csv_records(path, columns=cols, delimiter="\t")
    assert info.value.record == 1
    with pytest.raises(DataError, match=r"expected header idx; got \[.index., .sentence1."):
        read_csv_records(path, columns=("idx",), delimiter="\t")


def test_record_fields_name_file_record_and_field():
    rec = Record("f.json", 4, {"ok": True, "xs": [1, "a"], "n": 3, "s": " "})
    assert rec.boolean("ok") is True and rec.values("xs", min_len=1) == [1, "a"]
    assert rec.text("s", nonempty=False) == " "
    for call, field, words in [(lambda: rec.boolean("n"), "n", "expected a boolean, got int"),
                               (lambda: rec.values("n"), "n", "expected a list, got int"),
                               (lambda: rec.values("xs", min_len=3), "xs", "at least 3"),
                               (lambda: rec.texts("xs"), "xs[0]", "non-empty string"),
                               (lambda: rec.text("s"), "s", "empty string"),
                               (lambda: rec.get("missing"), "missing", "missing field")]:
        with pytest.raises(DataError) as info:
            call()
        assert (info.value.file, info.value.record, info.value.field) == ("f.json", 4, field)
        assert words in str(info.value)
    with pytest.raises(DataError, match="expected an object, got list"):
        Record("f.json", 0, [])


def test_take():
    assert take([1, 2, 3], None) == [1, 2, 3] and take([1, 2, 3], 2) == [1, 2]
