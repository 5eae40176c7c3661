import numpy as np
import pytest
import torch

from illume_plus.mllm.config import TEXT_TO_IMAGE_TRAINING_TEMPLATE, IllumePlusConfig
from illume_plus.mllm.processor import IllumePlusProcessor, ImageCodes, collate

# SPEC §3 "What the authors' inference actually does": the exact text-to-image prompts.
T2I_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nGenerate an image of "
              "<height_256><width_256>, the content of the image is a red circle\n<|im_end|>\n<|im_start|>assistant\n"
              "<height_256><width_256>")
UNCOND_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nGenerate a random "
                 "image of <height_256><width_256>\n<|im_end|>\n<|im_start|>assistant\n<height_256><width_256>")


def gradient_image(h, w):
    """A smooth image (survives resizing well)."""
    y = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    x = torch.linspace(-1, 1, w)[None, :].expand(h, w)
    return torch.stack([y, x, (x + y) / 2]) * 0.9


def test_text_to_image_prompts_are_exact(tiny_processor):
    tok = tiny_processor.tokenizer
    for caption, expected in (("a red circle", T2I_PROMPT), (None, UNCOND_PROMPT)):
        seq = tiny_processor.encode_text_to_image(caption, (256, 256))
        assert tok.decode(seq.input_ids) == expected
        assert seq.input_ids.tolist() == tok(expected, add_special_tokens=False).input_ids
        assert seq.input_ids[-2:].tolist() == tiny_processor.layout.resolution_tag_ids(256, 256)
        assert seq.target_size == (256, 256) and not seq.images
        assert (seq.labels == -100).all()  # nothing to learn in an inference prompt


def test_training_wording_reproduces_the_fixture_prompt(tiny_tokenizer, layout_fixture):
    config = IllumePlusConfig.from_name("tiny", text_to_image_template=TEXT_TO_IMAGE_TRAINING_TEMPLATE)
    processor = IllumePlusProcessor(tiny_tokenizer, config)
    for name in ("512x512", "384x512"):
        example = layout_fixture["examples"][name]
        key = next(k for k in example if k.startswith("t2i_inference_prompt"))
        caption = "a cute frog dressed up like a cowboy with a western theme."
        seq = processor.encode_text_to_image(caption, tuple(example["target_hw"]))
        assert tiny_tokenizer.decode(seq.input_ids) == example[key]


def test_text_to_image_training_sample_supervises_tag_frame_and_end(tiny_processor):
    layout = tiny_processor.layout
    codes = ImageCodes(torch.randint(0, 256, (2, 2)), torch.randint(0, 512, (4, 4)), 64, 64)
    seq = tiny_processor.encode_text_to_image("a dog", (64, 64), codes=codes)
    supervised = seq.input_ids[seq.labels != -100]
    newline = tiny_processor.tokenizer("\n", add_special_tokens=False).input_ids
    frame = tiny_processor.frame_spec(64, 64).num_tokens
    assert supervised[:2].tolist() == layout.resolution_tag_ids(64, 64)
    assert supervised[2] == layout.start_of_image and supervised[2 + frame - 1] == layout.end_of_image
    assert supervised[2 + frame:].tolist() == [layout.im_end, *newline]
    assert "content of image is a dog" in tiny_processor.tokenizer.decode(seq.input_ids)  # training wording


def test_chat_labels_cover_assistant_replies_only(tiny_processor):
    tok, layout = tiny_processor.tokenizer, tiny_processor.layout
    codes = ImageCodes(torch.randint(0, 256, (2, 2)), torch.randint(0, 512, (4, 4)), 64, 64)
    messages = [
        {"role": "user", "content": [gradient_image(64, 64), "\nWhat is this?"]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Draw it."},
        {"role": "assistant", "content": [codes]},
    ]
    seq = tiny_processor.encode_chat(messages, add_generation_prompt=False)
    reply = tok("A cat.<|im_end|>\n", add_special_tokens=False).input_ids
    newline = tok("\n", add_special_tokens=False).input_ids
    supervised = seq.input_ids[seq.labels != -100].tolist()
    n_frame = 2 + tiny_processor.frame_spec(64, 64).num_tokens
    assert supervised[: len(reply)] == reply
    assert supervised[len(reply):len(reply) + n_frame][:2] == layout.resolution_tag_ids(64, 64)
    assert supervised[len(reply) + n_frame:] == [layout.im_end, *newline]
    assert len(supervised) == len(reply) + n_frame + 1 + len(newline)
    assert torch.equal(seq.labels[seq.labels != -100], seq.input_ids[seq.labels != -100])
    # the user image is a continuous frame: placeholders in its slots, one ImageSlots entry
    assert len(seq.images) == 1
    assert (seq.input_ids[seq.images[0].semantic_positions] == layout.pad_token_id).all()
    assert seq.input_ids[seq.images[0].semantic_positions[0] - 1] == layout.start_of_level0


def test_edit_prompt_resizes_source_and_tags_both_sides(tiny_processor):
    layout = tiny_processor.layout
    seq = tiny_processor.encode_edit(gradient_image(256, 256), "make it blue")
    assert seq.target_size == (512, 512)  # SPEC: a 256² source becomes 512²
    assert seq.images[0].pixel_values.shape == (3, 512, 512)
    text = tiny_processor.tokenizer.decode(seq.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                           "<height_512><width_512><start_of_image><start_of_level0>")
    assert text.endswith("<end_of_level1><end_of_image>\nPlease edit the image according to the instruction: "
                         "make it blue\n<|im_end|>\n<|im_start|>assistant\n<height_512><width_512>")
    assert seq.images[0].semantic_positions.numel() == 18 * 18 and seq.images[0].pixel_positions.numel() == 32 * 32
    recon = tiny_processor.tokenizer.decode(tiny_processor.encode_edit(gradient_image(256, 256), None).input_ids)
    assert "<end_of_image>\nReconstruct the image according to the given image\n<|im_end|>" in recon
    assert seq.input_ids[-2:].tolist() == layout.resolution_tag_ids(512, 512)


def test_understanding_image_sizes(tiny_processor):
    big = tiny_processor.prepare_understanding_image(gradient_image(1000, 700))
    h, w = big.shape[-2:]
    assert h % 16 == 0 and w % 16 == 0 and h * w <= 768 * 768 and abs(h / w - 1000 / 700) < 0.05
    small = tiny_processor.prepare_understanding_image(gradient_image(64, 96))
    assert small.shape[-2:] == (64, 96)
    odd = tiny_processor.prepare_understanding_image(gradient_image(70, 100))
    assert odd.shape[-2:] == (64, 96)


@pytest.mark.parametrize("size, expected", [((300, 900), (320, 960)), ((1000, 1000), (512, 512)),
                                            ((600, 800), (384, 512)), ((2000, 500), (1024, 256)),
                                            ((700, 380), (768, 384))])
def test_nearest_generation_size(tiny_processor, size, expected):
    assert tiny_processor.nearest_generation_size(*size) == expected


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_postprocess_undoes_the_fit(tiny_tokenizer, fit):
    processor = IllumePlusProcessor(tiny_tokenizer, IllumePlusConfig.from_name("tiny", generation_fit=fit))
    source = gradient_image(90, 200)
    prepared, info = processor.prepare_generation_image(source)
    assert prepared.shape == (3, 384, 768)
    if fit == "pad":  # the padding is pad_value, above and below the picture
        pad_value = processor.config.pad_value
        assert (prepared[:, 0] == pad_value).all() and (prepared[:, -1] == pad_value).all()
    for scale in (1, 2):  # the diffusion decoder's output is 2x the token size
        out = processor.postprocess(torch.nn.functional.interpolate(prepared[None], scale_factor=scale)[0], info)
        restored = torch.from_numpy(np.array(out)).permute(2, 0, 1).float() / 127.5 - 1
        if fit == "pad":
            assert out.size == (200, 90)  # PIL: (width, height)
            assert (restored - source).abs().mean() < 0.03
        else:  # crop: the kept window at the original scale (90 rows, 180 of the 200 columns)
            assert out.size == (180, 90)
            assert (restored - source[:, :, 10:190]).abs().mean() < 0.03


def test_collate_left_pads_and_shifts_image_positions(tiny_processor):
    a = tiny_processor.encode_understanding(gradient_image(64, 64), "Hi")
    b = tiny_processor.encode_text_to_image("a long caption about a cat sitting on a mat", (512, 512))
    batch = collate([a, b], pad_token_id=tiny_processor.layout.pad_token_id)
    short, long_ = (0, 1) if len(a) < len(b) else (1, 0)
    assert batch.attention_mask[long_].all()
    pad = batch.input_ids.shape[1] - min(len(a), len(b))
    assert (batch.attention_mask[short, :pad] == 0).all() and (batch.attention_mask[short, pad:] == 1).all()
    assert batch.position_ids[short, pad:].tolist() == list(range(batch.input_ids.shape[1] - pad))
    assert (batch.input_ids[short, :pad] == tiny_processor.layout.pad_token_id).all()
    assert (batch.labels[short, :pad] == -100).all()
    image = batch.images[0]
    assert image.row == 0
    shift = batch.input_ids.shape[1] - len(a)
    assert torch.equal(image.semantic_positions, a.images[0].semantic_positions + shift)
    right = collate([a, b], pad_token_id=0, padding_side="right")
    assert torch.equal(right.images[0].semantic_positions, a.images[0].semantic_positions)


def test_decode_text_drops_image_tokens(tiny_processor):
    layout = tiny_processor.layout
    words = tiny_processor.tokenizer("A cat.", add_special_tokens=False).input_ids
    ids = [layout.start_of_image, layout.semantic_code_start + 3, *words, layout.im_end]
    assert tiny_processor.decode_text(ids) == "A cat."


def test_bad_requests_are_rejected(tiny_processor):
    with pytest.raises(ValueError, match="height_200"):
        tiny_processor.encode_text_to_image("x", (200, 200))
    with pytest.raises(ValueError, match="ImageCodes"):
        tiny_processor.encode_chat([{"role": "assistant", "content": [gradient_image(64, 64)]}])
    with pytest.raises(ValueError, match="role"):
        tiny_processor.encode_chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        tiny_processor.encode_understanding(gradient_image(64, 64) * 3, "x")
    codes = ImageCodes(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long), 64, 64)
    with pytest.raises(ValueError, match="asks for 128x128"):
        tiny_processor.encode_text_to_image("x", (128, 128), codes=codes)


def test_processor_rejects_a_tokenizer_larger_than_the_embedding(tiny_tokenizer):
    with pytest.raises(ValueError, match="embedding rows"):
        IllumePlusProcessor(tiny_tokenizer, IllumePlusConfig.from_name("tiny", text_vocab_rows=300))
