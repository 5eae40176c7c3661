"""DualViTok, the dual (semantic + pixel) image tokenizer of ILLUME+."""

from .config import DualViTokConfig
from .model import DualViTok, DualViTokEncoding, DualViTokOutput
from .preprocess import image_to_tensor, semantic_input_size, smart_resize

__all__ = ["DualViTok", "DualViTokConfig", "DualViTokEncoding", "DualViTokOutput", "image_to_tensor",
           "semantic_input_size", "smart_resize"]
