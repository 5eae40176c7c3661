import pytest
import torch
import torch.nn.functional as F

from illume_plus.mllm.model import IllumePlus
from illume_plus.mllm.processor import EncodedSequence, ImageCodes, ImageSlots, MultimodalBatch


def random_image(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g) * 2 - 1


def code_slots_from_ids(ids, layout):
    """Semantic and pixel slot positions read off the ids alone: between the level markers,
    everything that is not <end_of_line>."""
    ids = ids.tolist()
    out = []
    for start, end in ((layout.start_of_level0, layout.end_of_level0), (layout.start_of_level1, layout.end_of_level1)):
        a, b = ids.index(start), ids.index(end)
        out.append([i for i in range(a + 1, b) if ids[i] != layout.end_of_line])
    return out


def test_features_land_in_the_slots_the_layout_names(tiny_model, tiny_processor, monkeypatch):
    layout = tiny_processor.layout
    seqs = [tiny_processor.encode_understanding(random_image(64, 96, 0), "What is this?"),
            tiny_processor.encode_understanding(random_image(48, 48, 1), "Describe it.")]
    batch = tiny_processor.collate(seqs)
    d = tiny_model.config.hidden_size

    def fake_encode(images):  # row i of image k holds k*1000 + i (semantic) or -(k*1000 + i) - 1 (pixel)
        out = []
        for k, img in enumerate(images):
            spec = tiny_processor.frame_spec(*img.shape[-2:])
            s = (k * 1000 + torch.arange(spec.num_semantic_codes, dtype=torch.float))[:, None].expand(-1, d)
            p = -(k * 1000 + torch.arange(spec.num_pixel_codes, dtype=torch.float))[:, None].expand(-1, d) - 1
            out.append((s, p))
        return out

    monkeypatch.setattr(tiny_model, "encode_images", fake_encode)
    embeds = tiny_model.embed_inputs(batch)
    token_embeds = tiny_model.embed_tokens(batch.input_ids)
    touched = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    for k in range(2):
        semantic_pos, pixel_pos = code_slots_from_ids(batch.input_ids[k], layout)
        assert torch.equal(embeds[k, semantic_pos, 0], k * 1000 + torch.arange(len(semantic_pos), dtype=torch.float))
        assert torch.equal(embeds[k, pixel_pos, 0], -(k * 1000 + torch.arange(len(pixel_pos), dtype=torch.float)) - 1)
        touched[k, semantic_pos + pixel_pos] = True
    assert torch.equal(embeds[~touched], token_embeds[~touched])  # markers, text and padding untouched


def test_encoders_match_dualvitok(tiny_model):
    """The MLLM's encoders compute DualViTok's continuous features (same weights)."""
    from illume_plus.tokenizer.model import DualViTok

    tok = DualViTok(tiny_model.config.tokenizer).eval()
    tok.semantic_encoder.model.load_state_dict(tiny_model.vision_tower.semantic_encoder.state_dict())
    tok.pixel_encoder.load_state_dict(tiny_model.vision_tower.pixel_encoder.state_dict())
    images = torch.stack([random_image(64, 96, 2), random_image(64, 96, 3)])
    with torch.no_grad():
        semantic, pixel = tiny_model.vision_tower(images)
        ref_semantic, ref_pixel = tok.encode_features(images)
    assert torch.allclose(semantic, ref_semantic, atol=1e-5)
    assert torch.allclose(pixel, ref_pixel.flatten(2).transpose(1, 2), atol=1e-5)
    assert semantic.shape == (2, 2 * 3, tiny_model.config.semantic_feature_dim)  # 64x96 -> 2x3 semantic grid


def mixed_requests(processor):
    codes = ImageCodes(torch.randint(0, 256, (2, 2)), torch.randint(0, 512, (4, 4)), 64, 64)
    return [
        processor.encode_understanding(random_image(64, 96, 4), "What is in the picture?"),
        processor.encode_text_to_image("a red circle", (512, 512)),
        processor.encode_understanding(random_image(32, 48, 5), "Describe the image in detail."),
        processor.encode_chat([{"role": "user", "content": ["Look: ", codes, " what is it?"]}]),
    ]


def test_left_padded_mixed_batch_matches_unbatched(tiny_model, tiny_processor):
    seqs = mixed_requests(tiny_processor)
    assert len({len(s) for s in seqs}) == len(seqs)  # really needs padding
    batch = tiny_processor.collate(seqs)
    out = tiny_model.prefill(batch)
    assert out.logits.shape == (4, tiny_model.config.vocab_size) and out.logits.dtype == torch.float32
    for i, seq in enumerate(seqs):
        alone = tiny_model.prefill(tiny_processor.collate([seq]))
        torch.testing.assert_close(out.logits[i], alone.logits[0], atol=2e-5, rtol=1e-4)

    # one cached step per row equals a fresh prefill of the longer sequence
    nxt = out.logits.argmax(-1)
    mask = torch.cat([batch.attention_mask, torch.ones(4, 1, dtype=torch.long)], dim=1)
    step = tiny_model.step(attention_mask=mask, position_ids=batch.attention_mask.sum(-1, keepdim=True),
                           past_key_values=out.past_key_values, input_ids=nxt[:, None])
    for i, seq in enumerate(seqs):
        longer = EncodedSequence(torch.cat([seq.input_ids, nxt[i:i + 1]]),
                                 torch.cat([seq.labels, torch.tensor([-100])]), seq.images)
        alone = tiny_model.prefill(tiny_processor.collate([longer]))
        torch.testing.assert_close(step.logits[i], alone.logits[0], atol=2e-5, rtol=1e-4)


def test_vocab_range_logits_are_a_slice_of_the_full_logits(tiny_model, tiny_processor):
    batch = tiny_processor.collate(mixed_requests(tiny_processor)[:2])
    full = tiny_model.prefill(batch)
    lo, hi = tiny_processor.layout.pixel_range
    part = tiny_model.prefill(batch, vocab_range=(lo, hi))
    torch.testing.assert_close(part.logits, full.logits[:, lo:hi])
    assert tiny_model.prefill(batch, compute_logits=False).logits is None


def reference_loss(model, batch):
    """CE from the full logits of the whole sequence (fine at tiny size)."""
    embeds = model.embed_inputs(batch)
    logits = model.language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids).logits.float()
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100)


def training_batch(processor):
    g = torch.Generator().manual_seed(0)
    codes = ImageCodes(torch.randint(0, 256, (2, 2), generator=g), torch.randint(0, 512, (4, 4), generator=g), 64, 64)
    seqs = [
        processor.encode_text_to_image("a red circle", (64, 64), codes=codes),
        processor.encode_chat([{"role": "user", "content": [random_image(64, 64, 6), "\nWhat is this?"]},
                               {"role": "assistant", "content": "A cat sitting on a mat."}],
                              add_generation_prompt=False),
    ]
    return processor.collate(seqs)


def test_training_loss_matches_full_logits_and_chunking(tiny_config, tiny_processor):
    torch.manual_seed(1)
    model = IllumePlus(tiny_config).train()
    batch = training_batch(tiny_processor)
    labelled = int((batch.labels[:, 1:] != -100).sum())
    out = model(batch)
    assert out.num_tokens == labelled > 20
    with torch.no_grad():
        torch.testing.assert_close(out.loss, reference_loss(model, batch), atol=1e-5, rtol=1e-5)

    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert not any(n.startswith("vision_tower.") for n in grads)  # frozen encoders
    assert "semantic_adaptor.0.weight" in grads and "pixel_adaptor.2.weight" in grads
    model.zero_grad()

    model.config.loss_chunk_size = 7  # many chunks: same loss, same gradients
    try:
        chunked = model(batch)
        chunked.loss.backward()
    finally:
        model.config.loss_chunk_size = tiny_config.__class__.from_name("tiny").loss_chunk_size
    torch.testing.assert_close(chunked.loss, out.loss, atol=1e-6, rtol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-5)


def test_loss_ignores_padding_and_prompt(tiny_model, tiny_processor):
    batch = training_batch(tiny_processor)
    with torch.no_grad():
        both = tiny_model(batch)
        singles = [tiny_model(tiny_processor.collate([s])) for s in
                   (_row(batch, 0), _row(batch, 1))]
    expected = sum(o.loss * o.num_tokens for o in singles) / sum(o.num_tokens for o in singles)
    torch.testing.assert_close(both.loss, expected, atol=1e-5, rtol=1e-5)


def _row(batch, i):
    """Row i of a left-padded batch as an unpadded sequence."""
    keep = batch.attention_mask[i].bool()
    start = int((~keep).sum())
    images = [ImageSlots(img.pixel_values, img.semantic_positions - start, img.pixel_positions - start)
              for img in batch.images if img.row == i]
    return EncodedSequence(batch.input_ids[i, keep], batch.labels[i, keep], images)


def test_bad_inputs_give_clear_errors(tiny_model, tiny_processor):
    seq = tiny_processor.encode_understanding(random_image(64, 64, 7), "Hi")
    with pytest.raises(ValueError, match="needs batch.labels"):
        tiny_model(MultimodalBatch(seq.input_ids[None], torch.ones(1, len(seq), dtype=torch.long),
                                   torch.arange(len(seq))[None], None))
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_model.encode_images([torch.zeros(3, 40, 64)])
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model.step(attention_mask=torch.ones(1, 1), position_ids=torch.zeros(1, 1, dtype=torch.long),
                        past_key_values=None)


def test_from_base_models_keeps_text_rows_and_copies_encoders(tmp_path, tiny_config, tiny_processor):
    from transformers import Qwen2ForCausalLM

    from illume_plus.tokenizer.model import DualViTok

    qwen_config = tiny_config.qwen2_config()
    qwen_config.vocab_size = tiny_config.text_vocab_rows  # the plain LLM, before the image vocabulary
    torch.manual_seed(5)
    base = Qwen2ForCausalLM(qwen_config).eval()
    base.save_pretrained(tmp_path)
    tok = DualViTok(tiny_config.tokenizer)
    model = IllumePlus.from_base_models(tiny_config, tmp_path, dualvitok=tok).eval()

    rows = tiny_config.text_vocab_rows
    embed = model.language_model.get_input_embeddings().weight
    assert embed.shape[0] == tiny_config.vocab_size
    assert torch.equal(embed[:rows], base.get_input_embeddings().weight)
    assert torch.equal(model.vision_tower.pixel_encoder.conv_in.weight, tok.pixel_encoder.conv_in.weight)
    # on text, the extended model predicts the text vocabulary exactly as the base model did
    seq = tiny_processor.encode_chat([{"role": "user", "content": "What is in the picture?"}])
    out = model.prefill(tiny_processor.collate([seq]))
    with torch.no_grad():
        expected = base(seq.input_ids[None]).logits[0, -1].float()
    torch.testing.assert_close(out.logits[0, :rows], expected, atol=1e-5, rtol=1e-5)

    wrong = {k: v for k, v in base.state_dict().items() if k != "model.norm.weight"}
    with pytest.raises(ValueError, match="model.norm.weight"):
        IllumePlus.from_base_models(tiny_config, wrong)
