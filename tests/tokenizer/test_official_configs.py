"""Every DualViTok configuration the authors' code runs must load: random official-format config
dicts (seeded) over the whole space their sections allow, a state dict in THEIR key names and
shapes, strict loading, and a forward pass (eval and training, with a backward).

The key names and shapes below are written out from the authors' module definitions
(`SemanticEncoder`, `SemanticDecoder`, `MoVQEncoder`, `MoVQDecoder`, `SimVQ` in their
vision_tokenizer/tokenizer/), independently of our modules; so are the defaults their code applies
when a key is absent. Only the ViT's keys come from transformers' Qwen2-VL vision tower, which is
what their code instantiates too.
"""

import random

import pytest
import torch

from illume_plus.tokenizer import DualViTok, DualViTokConfig
from illume_plus.tokenizer.official import UnsupportedOfficialConfig

NUM_CONFIGS = 32
IMAGE = 56  # 2x2 semantic tokens; pixel grids of 56 / 2^(levels - 1)

# Their defaults for keys a section omits (SemanticEncoder / SemanticDecoder signatures,
# get_movqgan_config, SimVQ.__init__).
THEIR_DEFAULTS = {
    "semantic_encoder": dict(z_channels=4, double_z=False, num_blocks=2, embed_dim=1280, proj_layer="linear",
                             target_mlp="norm"),
    "semantic_decoder": dict(z_channels=4, embed_dim=1280, num_blocks=2, output_channels=1280, proj_layer="linear"),
    "movq": dict(attn_resolutions=[4], ch=256, ch_mult=[1, 1, 2, 2, 4], dropout=0.0, embed_dim=4, in_channels=3,
                 num_res_blocks=2, out_channels=3, z_channels=32, use_dc_up_down_blocks=False, double_z=False),
    "simvq": dict(rotation_trick=True, commitment_weight=1.0, input_to_quantize_commit_loss_weight=0.25,
                  frozen_codebook_dim=None),
}


# ----------------------------------------------------------------------------- random configs
def random_config(rng: random.Random) -> tuple[dict, dict]:
    """(their DualViTok config dict, their ViT config dict) that their code builds and runs."""
    vit = dict(depth=1, embed_dim=32, num_heads=2, hidden_size=rng.choice([48, 96]), hidden_act="quick_gelu",
               mlp_ratio=4, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    while True:
        z_sem = rng.choice([4, 8, 16])
        double_z = rng.random() < 0.3
        sem_dim = z_sem * (2 if double_z else 1)
        pix_dim = rng.choice([4, 8, 16])
        fused = sem_dim + pix_dim
        enc = random_movq(rng)
        grid = IMAGE // 2 ** (len(enc["ch_mult"]) - 1)
        # a decoder may have more levels than the encoder (it then upsamples past the input size);
        # one more at most, and attention only where a level is at most 28x28, to keep the test fast
        dec = random_movq(rng, max_levels=len(enc["ch_mult"]) + 1)
        dec["attn_resolutions"] = [lvl for lvl in dec["attn_resolutions"]
                                   if grid * 2 ** (len(dec["ch_mult"]) - 1 - lvl) <= 28]
        if enc["num_res_blocks"] == 0:  # their encoder's levels then only chain at width `ch`
            enc["ch_mult"][:-1] = [1] * (len(enc["ch_mult"]) - 1)
        enc_out = enc["ch"] * ([1] + enc["ch_mult"])[-1 if enc["num_res_blocks"] else -2]
        dec_in = dec["ch"] * dec["ch_mult"][-1]
        enc["z_channels"] = rng.choice([z for z in (8, 16, 32) if not enc["use_dc_up_down_blocks"] or enc_out % z == 0])
        enc["embed_dim"] = pix_dim
        dec["embed_dim"] = fused
        if dec["use_dc_up_down_blocks"]:
            if dec_in % fused:
                continue  # their DC input shortcut needs z_channels * (width // fused) == width
            dec["z_channels"] = fused
        else:
            dec["z_channels"] = rng.choice([fused, 24, 40])
        dec["out_channels"] = rng.choice([3, 1, 4])
        break
    config = {
        "semantic_encoder": dict(semantic_encoder="<vit folder>", z_channels=z_sem, double_z=double_z,
                                 num_blocks=rng.randint(0, 2), embed_dim=rng.choice([64, 128, 192]),
                                 proj_layer=rng.choice(["linear", "norm_linear", "mlp"]),
                                 target_mlp=rng.choice(["norm", "identity"]), attn_implementation="sdpa"),
        "semantic_quantizer": random_simvq(rng, sem_dim),
        "semantic_decoder": dict(z_channels=sem_dim, embed_dim=rng.choice([64, 128, 192]),
                                 num_blocks=rng.randint(0, 2), attn_implementation="sdpa",
                                 output_channels=rng.choice([vit["hidden_size"], 40]),
                                 proj_layer=rng.choice(["linear_norm", "linear", "norm_linear", "mlp"])),
        "pixel_encoder": enc,
        "pixel_quantizer": random_simvq(rng, pix_dim),
        "pixel_decoder": dec,
    }
    if rng.random() < 0.5:
        config.update(pixel_drop_rate=rng.choice([0.1, 0.5]), pixel_drop_batch_rate=rng.choice([0.1, 1.0]),
                      pixel_noise_type=rng.choice(["random", "zero"]))
    drop_default_valued_keys(rng, config)
    return config, vit


def random_movq(rng, max_levels=4):
    levels = rng.randint(2, min(4, max_levels))
    return dict(ch=rng.choice([32, 64]), ch_mult=[rng.choice([1, 2]) for _ in range(levels)],
                num_res_blocks=rng.randint(0, 2),
                # attention at the full-resolution level 0 would only cost time (any level works alike)
                attn_resolutions=rng.sample(range(1, levels), rng.randint(0, min(2, levels - 1))),
                dropout=0.0, in_channels=3, double_z=False, codebook_size=0, model_type="MoVQ",
                use_dc_up_down_blocks=rng.random() < 0.6)


def random_simvq(rng, dim):
    return dict(type="SimVQ", dim=dim, codebook_size=rng.choice([16, 64]), channel_first=True,
                rotation_trick=rng.random() < 0.5, frozen_codebook_dim=rng.choice([None, 8, 24]),
                commitment_weight=rng.choice([1.0, 0.5]), input_to_quantize_commit_loss_weight=0.25)


def drop_default_valued_keys(rng, config):
    """Their sections may leave out keys whose value is their default: drop some at random."""
    kinds = {"semantic_encoder": "semantic_encoder", "semantic_decoder": "semantic_decoder",
             "pixel_encoder": "movq", "pixel_decoder": "movq", "semantic_quantizer": "simvq",
             "pixel_quantizer": "simvq"}
    for name, kind in kinds.items():
        for key, default in THEIR_DEFAULTS[kind].items():
            if config[name].get(key, object()) == default and rng.random() < 0.5:
                del config[name][key]


# ----------------------------------------------------------------------------- their state dict
def their_state_dict(config: dict, vit: dict, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors under the authors' key names and shapes for this config."""
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    shapes: dict[str, tuple] = {}
    with torch.device("meta"):
        tower = Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(**vit))
    shapes.update({f"semantic_encoder.model.{k}": tuple(v.shape) for k, v in tower.state_dict().items()})

    se = {**THEIR_DEFAULTS["semantic_encoder"], **config["semantic_encoder"]}
    sd = {**THEIR_DEFAULTS["semantic_decoder"], **config["semantic_decoder"]}
    width = se["embed_dim"]
    shapes["semantic_encoder.proj_in.weight"] = (width, vit["hidden_size"], 1, 1)
    shapes["semantic_encoder.proj_in.bias"] = (width,)
    vit_blocks(shapes, "semantic_encoder", width, se["num_blocks"])
    projection(shapes, "semantic_encoder.proj_out", se["proj_layer"], width, se["z_channels"] * (2 if se["double_z"] else 1))
    shapes["semantic_decoder.proj_in.weight"] = (sd["embed_dim"], sd["z_channels"])
    shapes["semantic_decoder.proj_in.bias"] = (sd["embed_dim"],)
    vit_blocks(shapes, "semantic_decoder", sd["embed_dim"], sd["num_blocks"])
    projection(shapes, "semantic_decoder.proj_out", sd["proj_layer"], sd["embed_dim"], sd["output_channels"])

    for name in ("semantic_quantizer", "pixel_quantizer"):
        q = {**THEIR_DEFAULTS["simvq"], **config[name]}
        frozen = q["frozen_codebook_dim"] or q["dim"]
        shapes[f"{name}.frozen_codebook"] = (q["codebook_size"], frozen)
        shapes[f"{name}.code_transform.weight"] = (q["dim"], frozen)

    enc = {**THEIR_DEFAULTS["movq"], **config["pixel_encoder"]}
    dec = {**THEIR_DEFAULTS["movq"], **config["pixel_decoder"]}
    movq_encoder(shapes, enc)
    conv(shapes, "pixel_quant_conv", enc["z_channels"], enc["embed_dim"], 1)
    conv(shapes, "pixel_post_quant_conv", dec["embed_dim"], dec["z_channels"], 1)
    movq_decoder(shapes, dec)
    return {k: torch.randn(s, generator=rng) * 0.05 for k, s in shapes.items()}


def linear(shapes, name, n_in, n_out):
    shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in), (n_out,)


def norm(shapes, name, n):
    shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n,), (n,)


def conv(shapes, name, n_in, n_out, k):
    shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in, k, k), (n_out,)


def vit_blocks(shapes, prefix, width, count):  # Qwen2VLBatchVisionBlock, mlp_ratio 4
    for i in range(count):
        p = f"{prefix}.blocks.{i}"
        norm(shapes, f"{p}.norm1", width)
        norm(shapes, f"{p}.norm2", width)
        linear(shapes, f"{p}.attn.qkv", width, 3 * width)
        linear(shapes, f"{p}.attn.proj", width, width)
        linear(shapes, f"{p}.mlp.fc1", width, 4 * width)
        linear(shapes, f"{p}.mlp.fc2", 4 * width, width)


def projection(shapes, prefix, kind, width, out):
    if kind == "linear":
        linear(shapes, f"{prefix}.0", width, out)
    elif kind == "norm_linear":
        norm(shapes, f"{prefix}.0", width)
        linear(shapes, f"{prefix}.1", width, out)
    elif kind == "linear_norm":
        linear(shapes, f"{prefix}.0", width, out)
        norm(shapes, f"{prefix}.1", out)
    else:  # mlp: Linear, Tanh, Linear
        linear(shapes, f"{prefix}.0", width, width)
        linear(shapes, f"{prefix}.2", width, out)


def resnet(shapes, name, n_in, n_out, zq=None):
    for i, n in (("1", n_in), ("2", n_out)):
        if zq is None:
            norm(shapes, f"{name}.norm{i}", n)
        else:
            spatial_norm(shapes, f"{name}.norm{i}", n, zq)
    conv(shapes, f"{name}.conv1", n_in, n_out, 3)
    conv(shapes, f"{name}.conv2", n_out, n_out, 3)
    if n_in != n_out:
        conv(shapes, f"{name}.nin_shortcut", n_in, n_out, 1)


def spatial_norm(shapes, name, n, zq):
    norm(shapes, f"{name}.norm_layer", n)
    conv(shapes, f"{name}.conv_y", zq, n, 1)
    conv(shapes, f"{name}.conv_b", zq, n, 1)


def attention(shapes, name, n, zq=None):
    if zq is None:
        norm(shapes, f"{name}.norm", n)
    else:
        spatial_norm(shapes, f"{name}.norm", n, zq)
    for proj in ("q", "k", "v", "proj_out"):
        conv(shapes, f"{name}.{proj}", n, n, 1)


def movq_encoder(shapes, c):
    ch, mult, dc = c["ch"], c["ch_mult"], c["use_dc_up_down_blocks"]
    conv(shapes, "pixel_encoder.conv_in", c["in_channels"], ch, 3)
    in_mult = [1] + list(mult)
    for level in range(len(mult)):
        block_in, block_out = ch * in_mult[level], ch * mult[level]
        for j in range(c["num_res_blocks"]):
            resnet(shapes, f"pixel_encoder.down.{level}.block.{j}", block_in, block_out)
            block_in = block_out
            if level in c["attn_resolutions"]:
                attention(shapes, f"pixel_encoder.down.{level}.attn.{j}", block_in)
        if level != len(mult) - 1:
            conv(shapes, f"pixel_encoder.down.{level}.downsample.conv", block_in, block_in // 4 if dc else block_in, 3)
    resnet(shapes, "pixel_encoder.mid.block_1", block_in, block_in)
    attention(shapes, "pixel_encoder.mid.attn_1", block_in)
    resnet(shapes, "pixel_encoder.mid.block_2", block_in, block_in)
    norm(shapes, "pixel_encoder.norm_out", block_in)
    conv(shapes, "pixel_encoder.conv_out", block_in, c["z_channels"], 3)


def movq_decoder(shapes, c):
    ch, mult, dc, zq = c["ch"], c["ch_mult"], c["use_dc_up_down_blocks"], c["embed_dim"]
    block_in = ch * mult[-1]
    conv(shapes, "pixel_decoder.conv_in", c["z_channels"], block_in, 3)
    resnet(shapes, "pixel_decoder.mid.block_1", block_in, block_in, zq)
    attention(shapes, "pixel_decoder.mid.attn_1", block_in, zq)
    resnet(shapes, "pixel_decoder.mid.block_2", block_in, block_in, zq)
    for level in reversed(range(len(mult))):
        block_out = ch * mult[level]
        for j in range(c["num_res_blocks"] + 1):
            resnet(shapes, f"pixel_decoder.up.{level}.block.{j}", block_in, block_out, zq)
            block_in = block_out
            if level in c["attn_resolutions"]:
                attention(shapes, f"pixel_decoder.up.{level}.attn.{j}", block_in, zq)
        if level != 0:
            conv(shapes, f"pixel_decoder.up.{level}.upsample.conv", block_in, 4 * block_in if dc else block_in, 3)
    spatial_norm(shapes, "pixel_decoder.norm_out", block_in, zq)
    conv(shapes, "pixel_decoder.conv_out", block_in, c["out_channels"], 3)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", range(NUM_CONFIGS))
def test_random_official_config_loads_strictly_and_runs(seed):
    rng = random.Random(seed)
    their_config, vit = random_config(rng)
    config = DualViTokConfig.from_official(their_config, vit_config=vit)
    state = their_state_dict(their_config, vit, torch.Generator().manual_seed(seed))
    tok = DualViTok.from_official(state, config)  # strict: raises on any missing/unexpected key or shape
    assert set(tok.state_dict()) == set(state)

    dec = {**THEIR_DEFAULTS["movq"], **their_config["pixel_decoder"]}
    enc = {**THEIR_DEFAULTS["movq"], **their_config["pixel_encoder"]}
    grid = IMAGE // 2 ** (len(enc["ch_mult"]) - 1)
    side = grid * 2 ** (len(dec["ch_mult"]) - 1)
    out_semantic = {**THEIR_DEFAULTS["semantic_decoder"], **their_config["semantic_decoder"]}["output_channels"]
    images = torch.rand(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        out = tok(images)
    assert out.reconstruction.shape == (2, dec["out_channels"], side, side)
    assert out.semantic_reconstruction.shape == (2, out_semantic, 2, 2)
    assert out.pixel_ids.shape == (2, grid, grid)
    assert torch.isfinite(out.reconstruction).all() and torch.isfinite(out.semantic_reconstruction).all()

    # training mode (noise injection, rotation trick when set): gradients reach both branches
    tok.train()
    tok.requires_grad_(True)
    tok.semantic_encoder.vit.requires_grad_(False)
    out = tok(images)
    (out.reconstruction.square().mean() + out.semantic_reconstruction.square().mean()
     + out.semantic_commit_loss + out.pixel_commit_loss).backward()
    assert tok.pixel_encoder.conv_in.weight.grad is not None
    assert tok.semantic_encoder.proj_in.weight.grad is not None


def test_random_configs_cover_the_space():
    """The seeded configs exercise each option at least once (guards against a generator that
    quietly stops covering a branch)."""
    seen = {}
    for seed in range(NUM_CONFIGS):
        their, _ = random_config(random.Random(seed))
        cfg = DualViTokConfig.from_official(their, vit_config=_)
        for key, value in dict(
            head_proj=cfg.semantic_head.proj_layer, dec_proj=cfg.semantic_decoder.proj_layer,
            target=cfg.semantic_head.target, enc_dc=cfg.pixel_encoder.dc_blocks, dec_dc=cfg.pixel_decoder.dc_blocks,
            rotation=cfg.pixel_quantizer.rotation_trick, frozen=cfg.pixel_quantizer.frozen_dim is not None,
            levels_differ=len(cfg.pixel_encoder.ch_mult) != len(cfg.pixel_decoder.ch_mult),
            blocks_differ=cfg.pixel_encoder.num_res_blocks != cfg.pixel_decoder.num_res_blocks,
            widths_differ=cfg.semantic_head.width != cfg.semantic_decoder.width,
            noise=cfg.noise_token_rate > 0,
        ).items():
            seen.setdefault(key, set()).add(value)
    assert seen["head_proj"] == {"linear", "norm_linear", "mlp"}
    assert seen["dec_proj"] == {"linear_norm", "linear", "norm_linear", "mlp"}
    for key in ("target", "enc_dc", "dec_dc", "rotation", "frozen", "levels_differ", "blocks_differ",
                "widths_differ", "noise"):
        assert len(seen[key]) == 2, key


def test_omitted_keys_take_their_defaults():
    """A SimVQ section without rotation_trick uses the rotation trick, a MoVQ section without
    use_dc_up_down_blocks uses MoVQ's strided/nearest blocks: their code's defaults."""
    rng = random.Random(0)
    their, vit = random_config(rng)
    for name in ("semantic_quantizer", "pixel_quantizer"):
        their[name].pop("rotation_trick", None)
    for name in ("pixel_encoder", "pixel_decoder"):
        their[name]["use_dc_up_down_blocks"] = True
    their["pixel_decoder"].pop("use_dc_up_down_blocks")
    their["pixel_decoder"]["z_channels"] = 24  # any width works without DC shortcuts
    cfg = DualViTokConfig.from_official(their, vit_config=vit)
    assert cfg.semantic_quantizer.rotation_trick and cfg.pixel_quantizer.rotation_trick
    assert cfg.pixel_encoder.dc_blocks and not cfg.pixel_decoder.dc_blocks


@pytest.mark.parametrize("change,reason", [
    (lambda c, v: c["pixel_encoder"].update(double_z=True), "double_z"),
    (lambda c, v: c["semantic_encoder"].update(embed_dim=v["hidden_size"]), "Identity"),
    (lambda c, v: c["semantic_quantizer"].update(type="LFQ"), "only \\['SimVQ'\\]"),
    (lambda c, v: c["pixel_quantizer"].update(channel_first=False), "channel_first"),
    (lambda c, v: c["semantic_encoder"].update(extra_key=1), "extra_key"),
    (lambda c, v: c["pixel_decoder"].update(embed_dim=c["pixel_decoder"]["embed_dim"] + 1), "fused code width"),
    (lambda c, v: c.update(semantic_detail_merge_type="add"), "semantic_detail_merge_type"),
])
def test_configs_their_code_cannot_run_are_refused_with_the_reason(change, reason):
    their, vit = random_config(random.Random(1))
    their["pixel_decoder"].setdefault("embed_dim", THEIR_DEFAULTS["movq"]["embed_dim"])
    change(their, vit)
    with pytest.raises(UnsupportedOfficialConfig, match=reason):
        DualViTokConfig.from_official(their, vit_config=vit)
