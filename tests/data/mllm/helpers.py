"""A small MLLM data set on disk (procedural shapes, all four formats, pretokenised) for tests."""

from pathlib import Path


def make_mllm_data(root: Path, num: int = 12, seed: int = 0, sizes=((64, 64),)) -> Path:
    """root/{dualvitok, train/...}: synthetic lists, a random tiny DualViTok, codes. Returns the mixture."""
    import torch

    from illume_plus.data.mllm.codes import pretokenize
    from illume_plus.data.mllm.synthetic import write_synthetic_data
    from illume_plus.tokenizer.config import DualViTokConfig
    from illume_plus.tokenizer.model import DualViTok

    paths = write_synthetic_data(root / "train", num=num, seed=seed, sizes=sizes)
    torch.manual_seed(0)
    tokenizer = DualViTok(DualViTokConfig.from_name("tiny"))
    tokenizer.save_pretrained(root / "dualvitok")
    for kind in ("t2i", "edit"):
        pretokenize(paths[kind], kind, root / "train" / "codes" / kind, tokenizer, sizes, chunk_size=8,
                    progress_bar=False)
    return root / "train" / "mixture.yaml"
