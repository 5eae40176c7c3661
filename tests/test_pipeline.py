"""illume_plus.Pipeline on the tiny preset (random weights, small sizes via any_size=True)."""

import warnings

import pytest
import torch

from illume_plus import Pipeline
from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.mllm.frames import frame_ids
from illume_plus.mllm.images import image_to_tensor
from illume_plus.tokenizer.model import DualViTok
from tests.standins import tiny_model_and_processor

FAST = dict(any_size=True, top_k=20)


@pytest.fixture(scope="module")
def parts():
    model, processor = tiny_model_and_processor()
    tokenizer = DualViTok(model.config.tokenizer).eval()
    return model, processor, tokenizer


@pytest.fixture()
def pipe(parts):
    model, processor, tokenizer = parts
    return Pipeline(model, vision_tokenizer=tokenizer, processor=processor)


@pytest.fixture()
def spy(pipe):
    """Records the requests each engine call receives (through the sequential stream: the
    speculative path has its own tests in tests/mllm/test_speculative.py)."""
    pipe.speculative = False
    calls = []
    original = pipe.engine.stream

    def stream(requests):
        calls.append(requests)
        return original(requests)

    pipe.engine.stream = stream
    return calls


def contains(sequence: torch.Tensor, part: torch.Tensor) -> bool:
    n = part.numel()
    return any(torch.equal(sequence[i : i + n], part) for i in range(sequence.numel() - n + 1))


def occurrences(sequence: torch.Tensor, part: torch.Tensor) -> int:
    n = part.numel()
    return sum(torch.equal(sequence[i : i + n], part) for i in range(sequence.numel() - n + 1))


def prompt_text(processor, sequence) -> str:
    return processor.tokenizer.decode(sequence.input_ids.tolist())


def test_generate_one_result_per_prompt(pipe):
    results = pipe.generate(["a red circle", "a blue square"], size=[(64, 64), (64, 128)], seed=[1, 2], **FAST)
    assert len(results) == 2
    for result, (h, w) in zip(results, [(64, 64), (64, 128)]):
        assert result.size == (h, w)
        assert tuple(result.pixel_ids.shape) == (h // 16, w // 16)
        assert tuple(result.semantic_ids.shape) == (h // 28, w // 28)
        assert result.image.size == (w, h)  # PIL is (W, H)
    # the same prompt and seed alone gives the same image
    alone = pipe.generate("a blue square", size=(64, 128), seed=2, decode=False, **FAST)
    assert alone.image is None
    assert torch.equal(alone.pixel_ids, results[1].pixel_ids)
    assert torch.equal(alone.semantic_ids, results[1].semantic_ids)


def test_generate_prompts_use_cfg_rows_only_when_guided(pipe, spy):
    pipe.generate(["a", "b"], size=(64, 64), guidance_scale=2.0, decode=False, **FAST)
    pipe.generate("a", size=(64, 64), guidance_scale=1.0, decode=False, **FAST)
    guided, unguided = spy
    assert all("Generate a random image of <height_64><width_64>" in prompt_text(pipe.processor, r.unconditional_prompt)
               for r in guided)
    assert [r.seed for r in guided] == [0, 1]
    assert unguided[0].unconditional_prompt is None


def test_sizes(pipe):
    with pytest.raises(ValueError, match="multiple of 64"):
        pipe.generate("a", size=(100, 100), any_size=True)
    with pytest.raises(ValueError, match="list of 2"):
        pipe.generate(["a", "b"], size=[(64, 64)], any_size=True)
    # without any_size a request takes the generation size of the nearest aspect ratio
    assert pipe._check_size((500, 520), any_size=False) == (512, 512)
    assert pipe._check_size((300, 900), any_size=False) == (320, 960)


def test_edit_unconditional_row_reconstructs_the_same_image(pipe, spy):
    source = torch.rand(3, 80, 64) * 2 - 1
    result = pipe.edit(source, "make it blue", size=(64, 64), seed=3, **FAST)
    assert result.size == (64, 64) and result.image.size == (64, 80)  # the source's size (PIL: W, H)
    [[request]] = spy
    cond, uncond = request.prompt, request.unconditional_prompt
    assert "Please edit the image according to the instruction: make it blue" in prompt_text(pipe.processor, cond)
    uncond_text = prompt_text(pipe.processor, uncond)
    assert "Reconstruct the image according to the given image" in uncond_text
    assert "make it blue" not in uncond_text
    assert len(cond.images) == len(uncond.images) == 1
    assert torch.equal(cond.images[0].pixel_values, uncond.images[0].pixel_values)
    assert request.guidance_scale == 1.5


def test_understand_returns_text_and_streams(pipe):
    image = torch.rand(3, 64, 64) * 2 - 1
    pieces = []
    answer = pipe.understand(image, "What is in the picture?", max_new_tokens=6, stream=pieces.append)
    assert isinstance(answer, str) and "".join(pieces) == answer
    assert "".join(pipe.iter_understand(image, "What is in the picture?", max_new_tokens=6)) == answer
    two = pipe.understand([image, image], "Compare them.", max_new_tokens=3)
    assert isinstance(two, str)
    # greedy ignores the seed; sampling options switch to seeded sampling
    assert pipe.understand(image, "What is in the picture?", max_new_tokens=6, seed=9) == answer
    sampled = [pipe.understand(image, "What?", max_new_tokens=12, temperature=2.0, seed=s) for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]


def test_chat_keeps_replies_as_codes_and_reads_generated_images_as_pixels(pipe, spy):
    layout = pipe.processor.layout
    chat = pipe.chat()
    first = chat.generate("a cat", size=(64, 64), seed=1, **FAST)
    spec = pipe.processor.frame_spec(64, 64)
    as_reply = frame_ids(layout, spec, first.semantic_ids, first.pixel_ids, resolution_tag=True).ids
    as_input = frame_ids(layout, spec, first.semantic_ids, first.pixel_ids).ids

    chat.send("What colour is it?", max_new_tokens=3)
    talk = spy[-1][0]
    assert contains(talk.prompt.input_ids, as_reply)  # the earlier image, as the model wrote it
    assert talk.image_size is None and not talk.prompt.images

    edited = chat.edit("make it black", seed=2, **FAST)
    edit = spy[-1][0]
    assert edited.size == (64, 64)
    decoded = image_to_tensor(first.image)  # the generated image, as its decoded pixels
    for prompt in (edit.prompt, edit.unconditional_prompt):
        # the assistant turn keeps its codes; the user turn reads the image as continuous features
        assert occurrences(prompt.input_ids, as_input) == 1 and contains(prompt.input_ids, as_reply)
        assert len(prompt.images) == 1 and torch.equal(prompt.images[0].pixel_values, decoded)

    chat.send("And now?", images=[edited], max_new_tokens=3)
    ask = spy[-1][0]
    assert len(ask.prompt.images) == 2 and torch.equal(ask.prompt.images[-1].pixel_values,
                                                         image_to_tensor(edited.image))
    assert "Reconstruct the image" in prompt_text(pipe.processor, edit.unconditional_prompt)
    assert "make it black" in prompt_text(pipe.processor, edit.prompt)
    assert chat.images == [first, edited]
    assert [m["role"] for m in chat.messages] == ["user", "assistant"] * 4


def test_default_decoders(parts):
    model, processor, _ = parts
    with pytest.warns(UserWarning, match="RANDOM"):
        result = Pipeline(model, processor=processor).generate("a", size=(64, 64), **FAST)
    assert result.image.size == (64, 64)
    pipe = Pipeline(model, processor=processor, decoder="diffusion", diffusion_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pipe.generate("a", size=(64, 64), **FAST)
    assert result.size == (64, 64) and result.image.size == (128, 128)  # 2x super-resolution


def test_bad_arguments(parts, pipe):
    model, processor, _ = parts
    with pytest.raises(ValueError, match="decoder"):
        Pipeline(model, processor=processor, decoder="vae")
    with pytest.raises(ValueError, match="seeds"):
        pipe.generate(["a", "b"], size=(64, 64), seed=[1], **FAST)
    with pytest.raises(TypeError, match="unknown sampling option"):
        pipe.generate("a", size=(64, 64), topk=3, any_size=True)
    with pytest.raises(ValueError, match="nothing to edit"):
        pipe.chat().edit("make it blue")

    class FullSizeModel:  # a real vocabulary: the tiny fallback tokenizer must not be used
        config = IllumePlusConfig.from_name("illume-plus-3b")

    with pytest.raises(ValueError, match="no processor"):
        Pipeline(FullSizeModel())
