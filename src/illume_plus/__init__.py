"""ILLUME+: a dual visual tokenizer, a unified MLLM and a diffusion decoder (arXiv 2504.01934).

Public names are imported lazily so that `import illume_plus` stays cheap and a user of the
tokenizer alone never pays for diffusers or the LLM.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "DualViTok": "illume_plus.tokenizer.model",
    "DualViTokConfig": "illume_plus.tokenizer.config",
    "IllumePlus": "illume_plus.mllm.model",
    "IllumePlusConfig": "illume_plus.mllm.config",
    "load_official": "illume_plus.mllm.official",  # the authors' MLLM checkpoint folders
    "Pipeline": "illume_plus.pipeline",
    "DiffusionDecoderPipeline": "illume_plus.diffusion.pipeline",
    "load_image": "illume_plus.utils.images",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'illume_plus' has no attribute {name!r}")
