from .base import QuantizerOutput, VectorQuantizer
from .search import nearest_code, nearest_code_bruteforce
from .simvq import SimVQ
from .vq import VanillaVQ

QUANTIZERS = {"simvq": SimVQ, "vq": VanillaVQ}


def build_quantizer(kind: str, codebook_size: int, dim: int, **kwargs) -> VectorQuantizer:
    if kind.lower() not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {kind!r}; choose one of {sorted(QUANTIZERS)}")
    return QUANTIZERS[kind.lower()](codebook_size, dim, **kwargs)


__all__ = ["QuantizerOutput", "VectorQuantizer", "SimVQ", "VanillaVQ", "QUANTIZERS", "build_quantizer",
           "nearest_code", "nearest_code_bruteforce"]
