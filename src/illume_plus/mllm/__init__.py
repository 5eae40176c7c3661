"""The unified MLLM: Qwen2 + DualViTok encoders + adaptors; vocabulary, frames, prompts, loading.

Light imports only here; the model (transformers) loads when its module is imported.
"""

from .config import IllumePlusConfig
from .frames import FrameSpec, frame_ids, parse_frame
from .vocab import TokenLayout, extend_tokenizer

__all__ = ["IllumePlusConfig", "TokenLayout", "extend_tokenizer", "FrameSpec", "frame_ids", "parse_frame"]
