import json

import numpy as np
import pytest
import torch
from PIL import Image

from illume_plus.data.mllm.codes import CodeStore, anchor_crop, crop_loss, nearest_size, pretokenize
from illume_plus.mllm.config import GENERATION_SIZES


def test_nearest_size_and_crop_fraction():
    assert nearest_size(1000, 1000, GENERATION_SIZES) == (512, 512)
    assert nearest_size(300, 1200, GENERATION_SIZES) == (256, 1024)
    assert nearest_size(400, 600, GENERATION_SIZES) == (384, 576)
    assert nearest_size(400, 700, GENERATION_SIZES) == (384, 768)  # w/h 1.75: 1.5 and 2 tie; nearer in size
    assert crop_loss(512, 512, (512, 512)) == 0
    # 100x300 covering 64x64: scaled to 64x192, keeps 64 of 192 columns
    assert crop_loss(100, 300, (64, 64)) == pytest.approx(2 / 3)
    out = anchor_crop(Image.new("RGB", (300, 100)), (64, 64))
    assert out.shape == (3, 64, 64)


def _tokenizer():
    from illume_plus.tokenizer.config import DualViTokConfig
    from illume_plus.tokenizer.model import DualViTok

    torch.manual_seed(0)
    return DualViTok(DualViTokConfig.from_name("tiny")).eval()


def _images(tmp_path):
    """Lines: 1 square, 2 wide (crop 50% > 20%: dropped), 3 unreadable, 4 bad JSON, 5 square."""
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (64, 64), "wide": (64, 128), "b": (80, 80)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    lines = [{"image": "a.png", "caption": "x"}, {"image": "wide.png", "caption": "x"},
             {"image": "broken.png", "caption": "x"}, "{oops", {"image": "b.png", "caption": "x"}]
    path = tmp_path / "t2i.jsonl"
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def test_pretokenize_keeps_drops_counts_and_reads_back(tmp_path):
    tokenizer = _tokenizer()
    summary = pretokenize(_images(tmp_path), "t2i", tmp_path / "codes", tokenizer, [(64, 64)], chunk_size=2,
                          progress_bar=False)
    assert summary["complete"] and summary["chunks"] == 2
    assert (summary["kept"], summary["dropped_crop_over_limit"], summary["unreadable_image"]) == (2, 1, 1)
    assert summary["bad_lines"] == {"bad_json": 1}
    assert json.loads((tmp_path / "codes" / "summary.json").read_text()) == summary
    store = CodeStore(tmp_path / "codes")
    assert 1 in store and 5 in store and 2 not in store
    assert store.dropped == {2: "crop_over_limit", 3: "unreadable_image"}
    entry = store.get(5)
    assert entry.size == (64, 64) and entry.source is None
    # the stored grids are the tokenizer's codes of the anchor-cropped image
    from illume_plus.utils.images import load_image

    image = anchor_crop(load_image(tmp_path / "b.png"), (64, 64))
    with torch.no_grad():
        enc = tokenizer.encode(image[None])
    assert torch.equal(entry.target[0], enc.semantic_ids[0]) and torch.equal(entry.target[1], enc.pixel_ids[0])


def test_pretokenize_resumes_and_shards_over_processes(tmp_path):
    tokenizer = _tokenizer()
    lists = _images(tmp_path)
    # two "processes" (rank 0 and 1) share the chunks; together they equal one process
    for rank in (0, 1):
        part = pretokenize(lists, "t2i", tmp_path / "two", tokenizer, [(64, 64)], chunk_size=2, rank=rank,
                           world_size=2, progress_bar=False)
    assert part["complete"] and part["chunks_done"] == 2
    one = pretokenize(lists, "t2i", tmp_path / "one", tokenizer, [(64, 64)], chunk_size=2, progress_bar=False)
    for line in (1, 5):
        a, b = CodeStore(tmp_path / "one").get(line), CodeStore(tmp_path / "two").get(line)
        assert torch.equal(a.target[1], b.target[1])
    # a rerun finds every chunk done and touches nothing
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "one").iterdir()}
    again = pretokenize(lists, "t2i", tmp_path / "one", tokenizer, [(64, 64)], chunk_size=2, progress_bar=False)
    assert again == one
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "one").iterdir() if p.name != "summary.json"} == \
        {k: v for k, v in before.items() if k != "summary.json"}


def test_edit_records_store_source_and_target_codes(mllm_data):
    store = CodeStore(mllm_data.parent / "codes" / "edit")
    entry = store.get(1)
    assert entry.source is not None
    assert entry.source[1].shape == entry.target[1].shape == (4, 4)  # 64x64 -> 4x4 pixel grid
