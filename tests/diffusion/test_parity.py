"""Our pipeline against the authors' (tests/data/sdxl_decoder_public.*): same tiny UNet/VAE,
same codebooks, same fixed latents, Euler with SDXL defaults, 2 steps, guidance 2.0, fp32."""

import torch
import torch.nn.functional as F

from illume_plus.diffusion import DiffusionDecoderConfig

ATOL = 1e-4  # fp32: 2 UNet calls and an Euler step on latents of magnitude ~10


def _run_capturing(pipe, **call):
    """Call the pipeline, recording every UNet input/output and the latents after each step."""
    unet_inputs, unet_outputs, latents_after = [], [], []
    pre = pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: unet_inputs.append((args, kwargs)),
                                              with_kwargs=True)
    post = pipe.unet.register_forward_hook(lambda m, args, out: unet_outputs.append(out.sample))
    try:
        image = pipe(**call, num_inference_steps=2, guidance_scale=2.0, output_type="pt",
                     callback=lambda step, t, lat: latents_after.append(lat.clone()))
    finally:
        pre.remove()
        post.remove()
    return image, unet_inputs, unet_outputs, latents_after


def test_fused_codes_match_reference(fixture_pipeline, sdxl_fixture):
    _, t = sdxl_fixture
    for case in ("out512x512", "out768x1024"):
        fused = fixture_pipeline.code_embedder(t[f"{case}.inputs.semantic_indices"], t[f"{case}.inputs.pixel_indices"])
        torch.testing.assert_close(fused, t[f"{case}.vq_embeds_fp32_reference"], atol=1e-6, rtol=0)
        # theirs casts the tokenizer to fp16: same values up to fp16 rounding
        torch.testing.assert_close(fused, t[f"{case}.vq_embeds_fp16_from_indices_to_codes"].float(), atol=1e-3, rtol=0)


def test_size_index_of_reference_cases(fixture_pipeline, sdxl_fixture):
    meta, t = sdxl_fixture
    for case in ("out512x512", "out768x1024"):
        grid = tuple(t[f"{case}.inputs.pixel_indices"].shape[-2:])
        height, width = fixture_pipeline.output_size(grid)
        assert (height, width) == (meta["cases"][case]["height"], meta["cases"][case]["width"])
        assert fixture_pipeline.size_index(height, width) == meta["cases"][case]["resolution_index"]
    assert fixture_pipeline.size_index(768, 1024) == 2


def test_denoising_loop_matches_reference(fixture_pipeline, sdxl_fixture):
    """Fed the fp16-rounded code map their UNet saw, every intermediate matches."""
    _, t = sdxl_fixture
    p = "out512x512."
    image, inputs, outputs, latents_after = _run_capturing(
        fixture_pipeline, fused_codes=t[p + "vq_embeds_fp16_from_indices_to_codes"].float(),
        latents=t[p + "inputs.latents"])
    assert len(inputs) == 2
    for step in range(2):
        (sample, timestep), kwargs = inputs[step]
        torch.testing.assert_close(sample, t[p + f"step{step}.unet_input_sample"], atol=ATOL, rtol=0)
        assert float(timestep) == float(t[p + f"step{step}.timestep"])
        torch.testing.assert_close(kwargs["added_cond_kwargs"]["time_ids"], t[p + "step0.time_ids"])
        torch.testing.assert_close(kwargs["added_cond_kwargs"]["text_embeds"], t[p + "step0.text_embeds"])
        assert kwargs["encoder_hidden_states"].shape == (2, 77, 2048) and not kwargs["encoder_hidden_states"].any()
        torch.testing.assert_close(outputs[step], t[p + f"step{step}.noise_pred"], atol=ATOL, rtol=0)
        torch.testing.assert_close(latents_after[step], t[p + f"latents_after_step{step}"], atol=ATOL, rtol=0)
    torch.testing.assert_close(image, t[p + "image_pt"], atol=ATOL, rtol=0)


def test_from_ids_uncond_row_zero_and_cond_row_nearest_resized(fixture_pipeline, sdxl_fixture):
    """From ids (fp32 codes), the UNet input keeps the layout; image within fp16-rounding effects."""
    _, t = sdxl_fixture
    p = "out512x512."
    image, inputs, _, _ = _run_capturing(fixture_pipeline, semantic_ids=t[p + "inputs.semantic_indices"],
                                          pixel_ids=t[p + "inputs.pixel_indices"], latents=t[p + "inputs.latents"])
    sample = inputs[0][0][0]
    assert not sample[0, 4:].any()  # unconditional row: zero code features
    expected = F.interpolate(t[p + "vq_embeds_fp32_reference"], size=(64, 64), mode="nearest")[0]
    torch.testing.assert_close(sample[1, 4:], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(sample[:, :4], t[p + "step0.unet_input_sample"][:, :4], atol=1e-6, rtol=0)
    torch.testing.assert_close(image, t[p + "image_pt"], atol=5e-3, rtol=0)


def test_direct_unet_call_matches_reference(fixture_pipeline, sdxl_fixture):
    _, t = sdxl_fixture
    p = "out512x512.direct."
    # the decoder resizes a code map; the reference conditioning is already at latent size
    prediction = fixture_pipeline.decoder(t[p + "latent"], t[p + "timestep"], t[p + "conditioning"], 11)
    torch.testing.assert_close(prediction, t[p + "noise_pred"], atol=ATOL, rtol=0)


def test_tiny_preset_is_the_fixture_architecture(sdxl_fixture):
    meta, _ = sdxl_fixture
    config = DiffusionDecoderConfig.from_name("tiny")
    assert config.unet == meta["unet_config"]
    assert config.vae == meta["vae_config"]
    assert {k: v for k, v in config.scheduler.items() if k != "_class_name"} == meta["scheduler_config"]
