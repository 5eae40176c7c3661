import pytest
import torch
from PIL import Image

from illume_plus import DiffusionDecoderPipeline
from illume_plus.diffusion import CodeEmbedder


@pytest.fixture(scope="module")
def pipe():
    pipe = DiffusionDecoderPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def grids(batch, pixel=(2, 2), semantic=(1, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *semantic), generator=g), torch.randint(0, 512, (batch, *pixel), generator=g)


def test_output_is_twice_the_token_resolution(pipe):
    semantic, pixel = grids(2, pixel=(2, 3))  # token image 32x48 -> output 64x96
    images = pipe(semantic, pixel, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(images) == 2 and all(isinstance(im, Image.Image) for im in images)
    assert all(im.size == (96, 64) for im in images)  # PIL size is (W, H)


def test_deterministic_under_a_seed(pipe):
    semantic, pixel = grids(2)
    run = lambda seed: pipe(semantic, pixel, num_inference_steps=2, output_type="pt",  # noqa: E731
                            generator=torch.Generator().manual_seed(seed))
    first, second, other = run(0), run(0), run(1)
    assert first.shape == (2, 3, 64, 64) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_unconditional_row_has_zero_codes(pipe):
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        semantic, pixel = grids(2)
        pipe(semantic, pixel, num_inference_steps=1, guidance_scale=2.0, output_type="latent")
        pipe(semantic, pixel, num_inference_steps=1, guidance_scale=1.0, output_type="latent")
    finally:
        hook.remove()
    cfg_input, plain_input = seen
    assert cfg_input.shape == (4, 68, 8, 8) and plain_input.shape == (2, 68, 8, 8)
    assert not cfg_input[:2, 4:].any()  # rows [uncond, uncond, cond, cond]
    assert cfg_input[2:, 4:].abs().sum(dim=(1, 2, 3)).min() > 0
    torch.testing.assert_close(cfg_input[2:, 4:], plain_input[:, 4:])
    torch.testing.assert_close(cfg_input[:2, :4], cfg_input[2:, :4])


def test_list_of_grids_of_different_sizes(pipe):
    sizes = [((1, 1), (2, 2)), ((1, 2), (2, 4)), ((1, 1), (2, 2))]
    semantic, pixel = zip(*[grids(1, p, s, seed=i) for i, (s, p) in enumerate(sizes)])
    semantic, pixel = [s[0] for s in semantic], [p[0] for p in pixel]  # (h, w) grids
    generators = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    out = pipe(semantic, pixel, num_inference_steps=2, output_type="pt", generator=generators)
    assert [tuple(o.shape) for o in out] == [(3, 64, 64), (3, 64, 128), (3, 64, 64)]
    for i in range(3):  # same as decoding each image alone with its generator
        alone = pipe(semantic[i], pixel[i], num_inference_steps=2, output_type="pt",
                     generator=torch.Generator().manual_seed(10 + i))
        torch.testing.assert_close(out[i], alone[0])


def test_bad_inputs_are_named(pipe):
    semantic, pixel = grids(1)
    with pytest.raises(TypeError, match="integer"):
        pipe(semantic.float(), pixel)
    with pytest.raises(ValueError, match="batch sizes"):
        pipe(semantic, torch.cat([pixel, pixel]))
    with pytest.raises(ValueError, match="latents must be"):
        pipe(semantic, pixel, latents=torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="output_type"):
        pipe(semantic, pixel, output_type="jpeg")


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "decoder")
    loaded = DiffusionDecoderPipeline.from_pretrained(tmp_path / "decoder")
    loaded.set_progress_bar_config(disable=True)
    decoder_fields = lambda p: {k: v for k, v in p.config.to_dict().items()  # noqa: E731
                                if k not in ("unet", "vae", "scheduler")}
    assert decoder_fields(loaded) == decoder_fields(pipe)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    for name in ("unet", "vae", "scheduler"):
        assert public(getattr(loaded, name).config) == public(getattr(pipe, name).config)
    for name in ("unet", "vae"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    semantic, pixel = grids(1)
    call = dict(num_inference_steps=2, output_type="pt")
    torch.testing.assert_close(loaded(semantic, pixel, generator=torch.Generator().manual_seed(0), **call),
                               pipe(semantic, pixel, generator=torch.Generator().manual_seed(0), **call))


def test_authors_folder_needs_the_tokenizer_codebooks(pipe, tmp_path):
    folder = tmp_path / "dualvitok-sdxl-decoder"  # unet/, vae/, scheduler/ only
    for name in ("unet", "vae", "scheduler"):
        getattr(pipe, name).save_pretrained(folder / name)
    with pytest.raises(ValueError, match="vision_tokenizer"):
        DiffusionDecoderPipeline.from_pretrained(folder)
    pipe.code_embedder.save_pretrained(tmp_path / "codebooks")
    torch.save(pipe.code_embedder.state_dict(), tmp_path / "pytorch_model.bin")  # authors' tokenizer file
    loaded = DiffusionDecoderPipeline.from_pretrained(folder, vision_tokenizer=tmp_path / "pytorch_model.bin")
    assert torch.equal(loaded.code_embedder.pixel_quantizer.frozen_codebook,
                       pipe.code_embedder.pixel_quantizer.frozen_codebook)
    assert isinstance(loaded.code_embedder, CodeEmbedder)
    assert [tuple(e) for e in loaded.config.size_table][11] == (512, 512)


def test_from_sdxl_widens_conv_in_and_skips_text_encoders(pipe, tmp_path):
    import copy

    from diffusers import UNet2DConditionModel

    config = copy.deepcopy(pipe.config.unet)
    config["in_channels"] = 4
    UNet2DConditionModel(**config).save_pretrained(tmp_path / "sdxl" / "unet")
    pipe.vae.save_pretrained(tmp_path / "sdxl" / "vae")
    pipe.scheduler.save_pretrained(tmp_path / "sdxl" / "scheduler")
    (tmp_path / "sdxl" / "text_encoder").mkdir()  # present in SDXL folders, never read
    started = DiffusionDecoderPipeline.from_sdxl(tmp_path / "sdxl", vision_tokenizer=pipe.code_embedder)
    assert started.unet.config.in_channels == 68
    assert not started.unet.conv_in.weight[:, 4:].any()


def test_half_precision_keeps_codebooks_fp32(pipe):
    half = DiffusionDecoderPipeline.from_preset("tiny").to(dtype=torch.bfloat16)
    assert half.unet.dtype == torch.bfloat16
    assert half.code_embedder.pixel_quantizer.frozen_codebook.dtype == torch.float32
    semantic, pixel = grids(1)
    out = half(semantic, pixel, num_inference_steps=1, output_type="pt", progress_bar=False)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
