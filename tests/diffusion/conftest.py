import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from illume_plus.diffusion import CodeEmbedder, DiffusionDecoderConfig, DiffusionDecoderPipeline

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny UNet/VAE ops are too small to gain from threads; on a shared 2-core machine two
    threads made them ~5x slower. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sdxl_fixture():
    """(json metadata, tensors) of the authors' pipeline run on a tiny UNet/VAE."""
    meta = json.loads((DATA / "sdxl_decoder_public.json").read_text())
    return meta, load_file(str(DATA / "sdxl_decoder_public.safetensors"))


def _sub(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture
def fixture_pipeline(sdxl_fixture):
    """Our pipeline holding the fixture's UNet, VAE, scheduler config and codebooks."""
    meta, tensors = sdxl_fixture
    config = DiffusionDecoderConfig.from_name("tiny")
    config.unet, config.vae = dict(meta["unet_config"]), dict(meta["vae_config"])
    config.scheduler = {"_class_name": meta["scheduler"], **meta["scheduler_config"]}
    embedder = CodeEmbedder.from_state_dict(_sub(tensors, "dualvitok_weights."))
    config.code_embedder = embedder.config
    pipe = DiffusionDecoderPipeline.from_config(config)
    pipe.unet.load_state_dict(_sub(tensors, "unet."))
    pipe.code_embedder.load_state_dict(embedder.state_dict())
    pipe.vae.load_state_dict(_sub(tensors, "vae."))
    pipe.set_progress_bar_config(disable=True)
    return pipe
