import json

import pytest

from illume_plus.data.mllm.records import ReadReport, read_records


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_formats_parse_roles_images_and_paths(tmp_path):
    conv = _write(tmp_path / "c.jsonl", [
        {"image": ["a.png", "/abs/b.png"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "No."}]}])
    [record] = read_records(conv, "conversation")
    assert record.turns == [{"role": "user", "content": "<image>\n<image>\nSame?"},
                            {"role": "assistant", "content": "No."}]
    assert record.images == [str(tmp_path / "a.png"), "/abs/b.png"]
    assert record.where == f"{conv}:1" and record.line == 1
    [t2i] = read_records(_write(tmp_path / "g.jsonl", [{"image": "x.png", "caption": "a cat"}]), "t2i",
                         image_root="/data")
    assert (t2i.images, t2i.text) == (["/data/x.png"], "a cat")
    [edit] = read_records(_write(tmp_path / "e.jsonl", [{"source": "s.png", "instruction": "blue",
                                                         "target": "t.png"}]), "edit")
    assert edit.images == [str(tmp_path / "s.png"), str(tmp_path / "t.png")] and edit.text == "blue"


def test_bad_lines_are_counted_with_file_and_line_never_raised(tmp_path, caplog):
    path = _write(tmp_path / "bad.jsonl", [
        {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "Yo"}]},
        "{not json",
        {"image": "a.png", "conversations": [{"from": "human", "value": "no placeholder"},
                                             {"from": "gpt", "value": "x"}]},
        {"conversations": [{"from": "human", "value": "only a question"}]},
        {"conversations": [{"from": "robot", "value": "?"}, {"from": "gpt", "value": "x"}]},
        "",
        [1, 2],
    ])
    report = ReadReport()
    records = read_records(path, "conversation", report=report)
    assert [r.line for r in records] == [1]
    assert report.counts == {"bad_json": 1, "bad_record": 4}
    assert report.examples[0].startswith(f"{path}:2: not valid JSON")
    assert f"{path}:3: 0 <image> placeholder(s) but 1 image(s)" in report.examples
    assert any(f"{path}:4:" in e and "no assistant reply" in e for e in report.examples)
    assert f"{path}:7" in caplog.text


def test_text_format_refuses_images_and_t2i_needs_a_caption(tmp_path):
    report = ReadReport()
    assert read_records(_write(tmp_path / "t.jsonl", [{"image": "a.png", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]), "text", report=report) == []
    assert read_records(_write(tmp_path / "g.jsonl", [{"image": "a.png", "caption": " "}]), "t2i",
                        report=report) == []
    assert report.counts["bad_record"] == 2
    with pytest.raises(ValueError, match="unknown data format"):
        read_records(tmp_path / "t.jsonl", "video")
