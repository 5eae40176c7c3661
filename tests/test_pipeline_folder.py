"""The pipeline folder format: save/load round trip, the card, detection of the authors'
release parts, one-line errors for incomplete folders, the packaged default model."""

import json

import pytest
import torch

from illume_plus import Pipeline
from illume_plus.pipeline_folder import (DEFAULT_MODEL_DIR, FORMAT_TAG, KIND_DECODER, KIND_MLLM, KIND_OFFICIAL_MLLM,
                                         KIND_OFFICIAL_TOKENIZER, KIND_PIPELINE, KIND_RELEASE, KIND_TOKENIZER,
                                         ModelFolderError, PipelineCard, detect, random_pipeline)
from tests.standins import tiny_is_the_paper_tokenizer, write_official_release, write_small_pipeline


@pytest.fixture(autouse=True)
def _quiet(recwarn):
    yield


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    return write_small_pipeline(tmp_path_factory.mktemp("pipe") / "small", size=(64, 64))


def test_saved_folder_reloads_the_same_pipeline(tmp_path):
    pipe = random_pipeline("tiny", seed=3)
    card = PipelineCard(trained=True, default_size=(64, 128), description="round trip",
                        sampling={"generate": {"guidance_scale": 3.0, "temperature": 0.9}})
    pipe.save_pretrained(tmp_path / "p", card)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["mllm", "pipeline.json", "vision_tokenizer"]
    written = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    assert written["format"] == FORMAT_TAG and written["version"] == 1 and written["default_size"] == [64, 128]

    loaded = Pipeline.from_pretrained(tmp_path / "p", device="cpu")
    assert loaded.card == card
    for ours, theirs in ((pipe.model, loaded.model), (pipe.vision_tokenizer, loaded.vision_tokenizer)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the card's default size and sampling are what generate uses without arguments
    first = pipe.generate("a red circle", size=(64, 128), any_size=True, guidance_scale=3.0, temperature=0.9)
    second = loaded.generate("a red circle")
    assert second.size == (64, 128)
    assert torch.equal(first.semantic_ids, second.semantic_ids) and torch.equal(first.pixel_ids, second.pixel_ids)


def test_card_rejects_what_it_cannot_read():
    with pytest.raises(ModelFolderError, match="not an illume-plus-pipeline card"):
        PipelineCard.from_dict({"trained": True})
    with pytest.raises(ModelFolderError, match="version 7"):
        PipelineCard.from_dict({"format": FORMAT_TAG, "version": 7})
    with pytest.raises(ModelFolderError, match="unknown fields"):
        PipelineCard.from_dict({"format": FORMAT_TAG, "version": 1, "colour": "red"})
    with pytest.raises(ModelFolderError, match="unknown tasks"):
        PipelineCard(sampling={"painting": {}})
    with pytest.raises(ModelFolderError, match="default_size"):
        PipelineCard(default_size=(0, 64))


def test_incomplete_folders_fail_naming_the_missing_part(small_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_folder, broken)
    shutil.rmtree(broken / "vision_tokenizer")
    with pytest.raises(ModelFolderError, match="vision_tokenizer/ is missing"):
        Pipeline.from_pretrained(broken)
    shutil.copytree(small_folder / "vision_tokenizer", broken / "vision_tokenizer")
    (broken / "mllm" / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="model.safetensors is missing"):
        Pipeline.from_pretrained(broken)
    with pytest.raises(ModelFolderError, match="not found"):
        Pipeline.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="cannot tell what"):
        Pipeline.from_pretrained(tmp_path / "empty")


def test_the_authors_release_is_detected_and_loads_from_any_of_its_folders(tmp_path, monkeypatch):
    tiny_is_the_paper_tokenizer(monkeypatch)
    paths = write_official_release(tmp_path / "checkpoints")
    assert detect(paths["root"]) == KIND_RELEASE
    assert detect(paths["mllm"]) == KIND_OFFICIAL_MLLM
    assert detect(paths["vision_tokenizer"]) == KIND_OFFICIAL_TOKENIZER
    assert detect(paths["vision_tokenizer"].parent) == KIND_OFFICIAL_TOKENIZER
    assert detect(paths["diffusion_decoder"]) == KIND_DECODER

    from_root = Pipeline.from_pretrained(paths["root"], device="cpu")
    from_mllm = Pipeline.from_pretrained(paths["mllm"], device="cpu")  # DualViTok and decoder found beside it
    for pipe in (from_root, from_mllm):
        assert pipe.vision_tokenizer is not None and callable(pipe.decoder)
        assert pipe.card.trained
    result = from_root.generate("a red circle", size=(64, 64), any_size=True, seed=1)
    assert result.image.size == (128, 128)  # the diffusion decoder doubles the token image
    # a lone part that is not a model says what to do with it
    with pytest.raises(ModelFolderError, match="not a model"):
        Pipeline.from_pretrained(paths["diffusion_decoder"])

    # and our own formats are told apart from theirs
    ours = tmp_path / "ours"
    from_root.save_pretrained(ours)
    assert detect(ours) == KIND_PIPELINE
    assert detect(ours / "mllm") == KIND_MLLM and detect(ours / "vision_tokenizer") == KIND_TOKENIZER
    assert detect(ours / "diffusion_decoder") == KIND_DECODER


def test_the_packaged_default_model_loads_and_is_trained():
    assert (DEFAULT_MODEL_DIR / "pipeline.json").is_file()
    pipe = Pipeline.from_pretrained(device="cpu")
    assert pipe.card.trained is True
    size, outside = pipe.default_size()
    assert pipe.config.generation_sizes and size == tuple(pipe.card.default_size)
    result = pipe.generate("a red circle", decode=False)
    assert result.size == size
