from collections import Counter

import torch

from illume_plus.data.mllm.collator import MllmCollator, Skip, frame_spans
from illume_plus.data.mllm.dataset import MixtureDataset, MixtureItem, load_mixture
from illume_plus.data.mllm.records import Record


def _dataset(mllm_data):
    return MixtureDataset(load_mixture(mllm_data), seed=0)


def _items(dataset, task):
    return [dataset[i] for i in range(len(dataset)) if dataset[i].task == task]


def _supervised_text(processor, seq):
    return processor.tokenizer.decode(seq.labels[seq.labels >= 0].tolist())


def test_understanding_supervises_only_the_assistant_replies(mllm_data, tiny_processor):
    collator = MllmCollator(tiny_processor, cfg_dropout=0.0)
    item = _items(_dataset(mllm_data), "understanding")[0]
    seq = collator.encode(item)
    replies = [t["content"] for t in item.record.turns if t["role"] == "assistant"]
    assert _supervised_text(tiny_processor, seq) == "".join(f"{r}<|im_end|>\n" for r in replies)
    assert len(seq.images) == 1  # the <image> placeholder became a continuous image frame
    [(start, end)] = frame_spans(seq.input_ids, tiny_processor.layout)
    assert (seq.labels[start:end] == -100).all()


def test_t2i_condition_dropout_uses_the_random_image_prompt(mllm_data, tiny_processor):
    dataset = _dataset(mllm_data)
    keep, drop = MllmCollator(tiny_processor, cfg_dropout=0.0), MllmCollator(tiny_processor, cfg_dropout=1.0)
    item = _items(dataset, "t2i")[0]
    kept, dropped = keep.encode(item), drop.encode(item)
    text = tiny_processor.tokenizer.decode(kept.input_ids.tolist())
    assert f"the content of image is {item.record.text}" in text
    dropped_text = tiny_processor.tokenizer.decode(dropped.input_ids.tolist())
    assert "Generate a random image of <height_64><width_64>" in dropped_text and item.record.text not in dropped_text
    # same target either way: the image codes with their resolution tag
    assert torch.equal(kept.labels[kept.labels >= 0], dropped.labels[dropped.labels >= 0])
    assert _supervised_text(tiny_processor, kept).startswith("<height_64><width_64><start_of_image>")


def test_edit_condition_dropout_reconstructs_the_source(mllm_data, tiny_processor):
    dataset = _dataset(mllm_data)
    item = _items(dataset, "edit")[0]
    kept = MllmCollator(tiny_processor, cfg_dropout=0.0).encode(item)
    dropped = MllmCollator(tiny_processor, cfg_dropout=1.0).encode(item)
    layout = tiny_processor.layout
    assert "Reconstruct the image according to the given image" in tiny_processor.tokenizer.decode(
        dropped.input_ids.tolist())
    target_pixels = kept.labels[layout.is_pixel_code(kept.labels)] - layout.pixel_code_start
    source_pixels = dropped.labels[layout.is_pixel_code(dropped.labels)] - layout.pixel_code_start
    assert torch.equal(target_pixels, item.codes.target[1].flatten())
    assert torch.equal(source_pixels, item.codes.source[1].flatten())


def test_dropout_is_ten_percent_and_a_function_of_seed_epoch_index(tiny_processor):
    collator = MllmCollator(tiny_processor, cfg_dropout=0.1, seed=3)
    record = Record("t2i", "x:1", 1)
    draws = [collator.drops_condition(MixtureItem(i, 0, "t2i", record)) for i in range(4000)]
    assert 0.08 < sum(draws) / len(draws) < 0.12
    again = [collator.drops_condition(MixtureItem(i, 0, "t2i", record)) for i in range(4000)]
    assert draws == again
    other_epoch = [collator.drops_condition(MixtureItem(i, 1, "t2i", record)) for i in range(4000)]
    assert draws != other_epoch


def test_truncation_never_cuts_an_image_frame(mllm_data, tiny_processor):
    dataset = _dataset(mllm_data)
    item = _items(dataset, "understanding")[0]
    full = MllmCollator(tiny_processor, cfg_dropout=0.0).encode(item)
    [(start, end)] = frame_spans(full.input_ids, tiny_processor.layout)
    # a cut inside the frame: the sample is skipped and counted
    inside = MllmCollator(tiny_processor, max_length=start + 5, cfg_dropout=0.0)
    assert inside.encode(item) == Skip("too_long")
    batch = inside([item])
    assert batch.skipped == Counter(too_long=1) and batch.batch is None
    # a cut in the reply after the frame: truncated, the image kept whole
    first_label = int((full.labels >= 0).nonzero()[0])
    assert first_label > end
    after = MllmCollator(tiny_processor, max_length=first_label + 2, cfg_dropout=0.0).encode(item)
    assert len(after.images) == 1
    assert torch.equal(after.input_ids, full.input_ids[:first_label + 2])
    assert torch.equal(after.labels, full.labels[:first_label + 2])
    # a cut that leaves no supervised token: skipped
    assert MllmCollator(tiny_processor, max_length=first_label, cfg_dropout=0.0).encode(item) == \
        Skip("no_supervised_tokens")


def test_unreadable_image_is_skipped_and_counted(mllm_data, tiny_processor, tmp_path, caplog):
    item = _items(_dataset(mllm_data), "understanding")[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    item.record.images = [str(broken)]
    batch = MllmCollator(tiny_processor)([item])
    assert batch.batch is None and batch.skipped == Counter(unreadable_image=1)
    assert item.record.where in caplog.text


def test_mixture_weights_repeat_and_subsample(mllm_data):
    dataset = _dataset(mllm_data)
    per_source = dataset.report.per_source
    assert per_source["questions"] == {"records": 12, "per_epoch": 12}
    assert per_source["chat"] == {"records": 12, "per_epoch": 6}  # weight 0.5
    twice = MixtureDataset(load_mixture(None, [{"name": "g", "format": "t2i", "weight": 2.0,
                                                "path": str(mllm_data.parent / "t2i.jsonl"),
                                                "codes": str(mllm_data.parent / "codes" / "t2i")}]))
    assert len(twice) == 24 and Counter(twice.items)[(0, 0)] == 2
    assert set(dataset.sample_sizes()) == {(0, 0), (64, 64)}  # text/understanding vs 64x64 targets


def test_discrete_image_input_puts_the_images_codes_in_the_prompt(mllm_data, tiny_processor):
    """`image_codes` (the discrete-input ablation): the <image> becomes the DualViTok's code tokens,
    unsupervised, and no continuous image is left for the vision tower."""
    from illume_plus import DualViTok, DualViTokConfig
    from illume_plus.data.mllm import ImageCodeReader
    from illume_plus.utils.images import load_image

    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny")).eval()
    collator = MllmCollator(tiny_processor, cfg_dropout=0.0, image_codes=ImageCodeReader(tok, tiny_processor))
    item = _items(_dataset(mllm_data), "understanding")[0]
    seq = collator.encode(item)
    assert seq.images == []
    layout = tiny_processor.layout
    pixels = tiny_processor.prepare_understanding_image(load_image(item.record.images[0]))
    enc = tok.encode(pixels[None])
    assert torch.equal(seq.input_ids[layout.is_pixel_code(seq.input_ids)] - layout.pixel_code_start,
                       enc.pixel_ids.flatten())
    assert torch.equal(seq.input_ids[layout.is_semantic_code(seq.input_ids)] - layout.semantic_code_start,
                       enc.semantic_ids.flatten())
    [(start, end)] = frame_spans(seq.input_ids, layout)
    assert (seq.labels[start:end] == -100).all()
    continuous = MllmCollator(tiny_processor, cfg_dropout=0.0).encode(item)
    assert len(continuous.images) == 1 and not layout.is_pixel_code(continuous.input_ids).any()
