"""The pipeline folder: one directory holding everything `Pipeline.from_pretrained` needs.

    <dir>/pipeline.json        format tag + version, default size, sampling defaults, trained, description
    <dir>/mllm/                IllumePlus.save_pretrained (config, safetensors weights, text tokenizer)
    <dir>/vision_tokenizer/    DualViTok.save_pretrained
    <dir>/diffusion_decoder/   optional: DiffusionDecoderPipeline.save_pretrained

`load_pipeline(None)` loads the packaged default model (`illume_plus/default_model/`).
`load_pipeline(path)` also takes the authors' release, detected from the files themselves:
the MLLM origin (or -hf) folder, the DualViTok `pytorch_model.bin` (or its folder), the SDXL
decoder folder (unet/ vae/ scheduler/), or a folder holding those three (their README's
`checkpoints/`). A DualViTok and a decoder next to an MLLM folder are found on their own.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .utils.io import load_json, save_json

FORMAT_TAG = "illume-plus-pipeline"
FORMAT_VERSION = 1
CARD_NAME = "pipeline.json"
PARTS = {"mllm": "mllm", "vision_tokenizer": "vision_tokenizer", "diffusion_decoder": "diffusion_decoder"}
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
TASKS = ("generate", "edit", "understand")

# What `detect` returns.
KIND_PIPELINE = "pipeline folder"
KIND_MLLM = "IllumePlus folder (ours)"
KIND_OFFICIAL_MLLM = "the authors' MLLM folder"
KIND_TOKENIZER = "DualViTok folder (ours)"
KIND_OFFICIAL_TOKENIZER = "the authors' DualViTok checkpoint"
KIND_DECODER = "diffusion decoder folder"
KIND_RELEASE = "folder of release parts"
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


class ModelFolderError(ValueError):
    """A model path that is missing, incomplete or of a kind that cannot be used (one line)."""


@dataclass
class PipelineCard:
    """pipeline.json: what a pipeline folder is and how to run it by default.

    default_size: (H, W) of `generate` when no size is given. It may lie outside the model's
        generation sizes (a small model trained at 256x256); then it is used as it is.
    sampling: per task ("generate", "edit", "understand") default keyword arguments, e.g.
        {"generate": {"guidance_scale": 2.0, "temperature": 1.0}}.
    """

    trained: bool = True
    description: str = ""
    default_size: tuple[int, int] = (512, 512)
    sampling: dict = field(default_factory=dict)

    def __post_init__(self):
        self.default_size = tuple(int(v) for v in self.default_size)
        if len(self.default_size) != 2 or min(self.default_size) <= 0:
            raise ModelFolderError(f"pipeline.json: default_size must be [H, W] > 0, got {list(self.default_size)}")
        unknown = sorted(set(self.sampling) - set(TASKS))
        if unknown:
            raise ModelFolderError(f"pipeline.json: sampling has unknown tasks {unknown}; valid: {list(TASKS)}")

    def defaults(self, task: str) -> dict:
        return dict(self.sampling.get(task, {}))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["default_size"] = list(self.default_size)
        return {"format": FORMAT_TAG, "version": FORMAT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = CARD_NAME) -> "PipelineCard":
        d = dict(d)
        if d.pop("format", None) != FORMAT_TAG:
            raise ModelFolderError(f"{where}: not an {FORMAT_TAG} card (its 'format' field is missing or different)")
        version = d.pop("version", None)
        if version != FORMAT_VERSION:
            raise ModelFolderError(f"{where}: format version {version!r}; this illume-plus reads {FORMAT_VERSION}")
        known = {"trained", "description", "default_size", "sampling"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelFolderError(f"{where}: unknown fields {unknown}; valid: {sorted(known)}")
        return cls(**d)


# ---------------------------------------------------------------------- writing
def save_pipeline(pipe, directory: str | os.PathLike, card: PipelineCard | None = None) -> Path:
    """Write `pipe` (model with its processor, vision tokenizer, optional diffusion decoder) as a
    pipeline folder."""
    directory = Path(directory)
    card = card or getattr(pipe, "card", None) or PipelineCard()
    pipe._prepare_decoder()  # a Pipeline built without a vision tokenizer makes its (random) one here
    directory.mkdir(parents=True, exist_ok=True)
    pipe.model.save_pretrained(directory / PARTS["mllm"], tokenizer=pipe.processor.tokenizer)
    pipe.vision_tokenizer.save_pretrained(directory / PARTS["vision_tokenizer"])
    if callable(pipe.decoder):
        pipe.decoder.save_pretrained(directory / PARTS["diffusion_decoder"])
    save_json(card.to_dict(), directory / CARD_NAME)  # last: a folder with a card is complete
    return directory


def random_pipeline(preset: str = "tiny", seed: int = 0, weight_dtype: torch.dtype = torch.float32):
    """A Pipeline with random weights in a named preset (the stand-in default model, tests).
    The tiny preset gets the built-in tiny text tokenizer as its processor."""
    from .mllm.config import IllumePlusConfig
    from .mllm.model import IllumePlus
    from .mllm.processor import IllumePlusProcessor
    from .mllm.text_tokenizer import build_tiny_text_tokenizer
    from .pipeline import Pipeline
    from .tokenizer.model import DualViTok

    config = IllumePlusConfig.from_name(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = IllumePlus(config).eval()
        tok = DualViTok(config.tokenizer).eval()
        # one set of encoders: the MLLM reads images with the tokenizer's own ViT and pixel encoder
        model.vision_tower.semantic_encoder.load_state_dict(tok.semantic_encoder.model.state_dict())
        model.vision_tower.pixel_encoder.load_state_dict(tok.pixel_encoder.state_dict())
    model.to(weight_dtype)
    tok.to(weight_dtype)
    processor = IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), config)
    model.processor = processor
    return Pipeline(model, vision_tokenizer=tok, processor=processor)


# ---------------------------------------------------------------------- detecting
def detect(path: str | os.PathLike) -> str:
    """What `path` holds (one of the KIND_* strings); ModelFolderError when it is none of them."""
    path = Path(path)
    if not path.exists():
        raise ModelFolderError(f"model path not found: {path}")
    if path.is_file():
        if path.suffix in _CHECKPOINT_SUFFIXES:
            return KIND_OFFICIAL_TOKENIZER
        raise ModelFolderError(f"{path} is a file but not a checkpoint ({', '.join(_CHECKPOINT_SUFFIXES)})")
    if (path / CARD_NAME).is_file():
        return KIND_PIPELINE
    if all((path / part).is_dir() for part in ("unet", "vae", "scheduler")):
        return KIND_DECODER
    config_file = path / "config.json"
    if config_file.is_file():
        config = load_json(config_file)
        if "text_vocab_rows" in config and "tokenizer" in config:
            return KIND_MLLM
        if "vit_depth" in config or "pixel_codebook_size" in config:
            return KIND_TOKENIZER if (path / "model.safetensors").is_file() else KIND_OFFICIAL_TOKENIZER
        llm = config.get("text_config") or config.get("llm_config") or config
        if isinstance(llm, dict) and "hidden_size" in llm and "vocab_size" in llm:
            return KIND_OFFICIAL_MLLM
    if _official_tokenizer_file(path) is not None:
        return KIND_OFFICIAL_TOKENIZER
    if _release_parts(path):
        return KIND_RELEASE
    raise ModelFolderError(f"cannot tell what {path} holds: expected pipeline.json, an MLLM config.json, "
                           "a DualViTok checkpoint or unet/ vae/ scheduler/ (pass --official for the authors' MLLM)")


def _official_tokenizer_file(folder: Path) -> Path | None:
    for name in ("pytorch_model.bin", "model.safetensors", "model.pt"):
        if (folder / name).is_file() and not (folder / "config.json").is_file():
            return folder / name
    return None


def _release_parts(folder: Path) -> dict[str, Path]:
    """The release parts found among a folder's children: {"mllm", "vision_tokenizer", "diffusion_decoder"}."""
    found: dict[str, Path] = {}
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            kind = detect(child)
        except (ModelFolderError, ValueError, OSError):
            continue
        part = {KIND_MLLM: "mllm", KIND_OFFICIAL_MLLM: "mllm", KIND_TOKENIZER: "vision_tokenizer",
                KIND_OFFICIAL_TOKENIZER: "vision_tokenizer", KIND_DECODER: "diffusion_decoder"}.get(kind)
        if part and part not in found:
            found[part] = child
    return found


# ---------------------------------------------------------------------- loading
def load_pipeline(path: str | os.PathLike | None = None, *, vision_tokenizer=None, diffusion_decoder=None,
                  official: bool = False, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, diffusion_steps: int | None = None):
    """A ready Pipeline from a pipeline folder (default: the packaged default model) or the
    authors' release. `vision_tokenizer` / `diffusion_decoder` (paths) override or complete what
    the folder holds; `official=True` reads an MLLM folder as the authors' format when its
    config.json cannot tell. Every part goes to `device` (default: cuda if available); the MLLM
    and the diffusion UNet to `dtype` (default: bfloat16 on GPU, float32 on CPU)."""
    from .pipeline import Pipeline

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    parts, card = _locate_parts(folder, official)
    if vision_tokenizer is not None:
        parts["vision_tokenizer"] = Path(vision_tokenizer)
    if diffusion_decoder is not None:
        parts["diffusion_decoder"] = Path(diffusion_decoder)
    if "mllm" not in parts:
        raise ModelFolderError(f"no MLLM in {folder} (expected mllm/, an IllumePlus folder or the authors' folder)")

    model = _load_mllm(parts["mllm"], official or parts.get("mllm_official", False))
    tok = load_vision_tokenizer(parts["vision_tokenizer"], model.config.tokenizer) if "vision_tokenizer" in parts else None
    decoder = "pixel"
    if "diffusion_decoder" in parts:
        from .diffusion.pipeline import DiffusionDecoderPipeline

        _require_dir(parts["diffusion_decoder"], "diffusion decoder")
        decoder = DiffusionDecoderPipeline.from_pretrained(parts["diffusion_decoder"], vision_tokenizer=tok)
        decoder = decoder.to(device=device, dtype=dtype)
    model = model.to(device=device, dtype=dtype).eval()
    if tok is not None:  # codes -> pixels in fp32 on CPU, the model's precision on GPU
        tok = tok.to(device=device, dtype=dtype if device.type == "cuda" else torch.float32).eval()
    kwargs = {} if diffusion_steps is None else {"diffusion_steps": diffusion_steps}
    pipe = Pipeline(model, vision_tokenizer=tok, decoder=decoder, processor=model.processor, **kwargs)
    pipe.card = card
    pipe.source = folder
    return pipe


def _locate_parts(folder: Path, official: bool) -> tuple[dict, PipelineCard]:
    if official:
        if not folder.is_dir():
            raise ModelFolderError(f"--official expects the authors' MLLM folder, got {folder}")
        return {"mllm": folder, "mllm_official": True, **_siblings(folder)}, PipelineCard()
    kind = detect(folder)
    if kind == KIND_PIPELINE:
        card = PipelineCard.from_dict(load_json(folder / CARD_NAME), where=str(folder / CARD_NAME))
        parts = {}
        for part, sub in PARTS.items():
            if (folder / sub).exists():
                parts[part] = folder / sub
            elif part != "diffusion_decoder":
                raise ModelFolderError(f"incomplete pipeline folder {folder}: {sub}/ is missing")
        return parts, card
    if kind in (KIND_MLLM, KIND_OFFICIAL_MLLM):
        return {"mllm": folder, "mllm_official": kind == KIND_OFFICIAL_MLLM, **_siblings(folder)}, PipelineCard()
    if kind == KIND_RELEASE:
        parts = _release_parts(folder)
        if "mllm" in parts:
            parts["mllm_official"] = detect(parts["mllm"]) == KIND_OFFICIAL_MLLM
        return parts, PipelineCard()
    raise ModelFolderError(f"{folder} is a {kind}, not a model: give the MLLM folder (or a pipeline folder) and "
                           "pass this one as the vision tokenizer / diffusion decoder")


def _siblings(mllm_folder: Path) -> dict:
    """A DualViTok and a diffusion decoder lying next to an MLLM folder (the authors' layout)."""
    parent = mllm_folder.resolve().parent
    found = {k: v for k, v in _release_parts(parent).items() if k != "mllm"} if parent.is_dir() else {}
    return found


def _load_mllm(path: Path, official: bool):
    from .mllm.model import IllumePlus
    from .mllm.official import load_official, load_official_processor

    _require_dir(path, "MLLM")
    if official:
        model = load_official(path)
        if model.processor is None:
            model.processor = load_official_processor(path, model.config)  # raises, naming the missing files
        return model
    for name in ("config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise ModelFolderError(f"incomplete MLLM folder: {path / name} is missing")
    model = IllumePlus.from_pretrained(path)
    if model.processor is None:
        raise ModelFolderError(f"incomplete MLLM folder: no text tokenizer files (tokenizer.json) in {path}")
    return model


def load_vision_tokenizer(path: str | os.PathLike, config):
    """DualViTok from our folder, or the authors' checkpoint (a .bin file or its folder) read with
    `config` (a DualViTokConfig: the MLLM's, or the "illume-plus" preset)."""
    from .tokenizer.model import DualViTok

    path = Path(path)
    if not path.exists():
        raise ModelFolderError(f"vision tokenizer not found: {path}")
    if path.is_dir() and (path / "model.safetensors").is_file() and (path / "config.json").is_file():
        return DualViTok.from_pretrained(path)
    checkpoint = path if path.is_file() else _official_tokenizer_file(path)
    if checkpoint is None:
        raise ModelFolderError(f"no DualViTok weights in {path} (expected model.safetensors + config.json, "
                               "or the authors' pytorch_model.bin)")
    return DualViTok.from_official(checkpoint, config)


def _require_dir(path: Path, what: str) -> None:
    if not Path(path).is_dir():
        raise ModelFolderError(f"{what} folder not found: {path}")


__all__ = ["PipelineCard", "ModelFolderError", "save_pipeline", "load_pipeline", "load_vision_tokenizer",
           "random_pipeline", "detect",
           "DEFAULT_MODEL_DIR", "FORMAT_TAG", "FORMAT_VERSION"]
