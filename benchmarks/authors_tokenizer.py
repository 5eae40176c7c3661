"""Time the AUTHORS' DualViTok (their released code, unmodified) on the parity fixture's config and
weights, for `bench_tokenizer.py --authors-src`. Runs in an environment with their stack:

    python -m venv --system-site-packages /work/venv-authors
    /work/venv-authors/bin/pip install "transformers==4.44.2" einx einops    # their pins
    git -C <mirror> archive HEAD | tar -x -C /work/authors_src               # illume-unified-mllm/ILLUME_plus
    python benchmarks/bench_tokenizer.py --authors-src /work/authors_src --authors-python /work/venv-authors/bin/python

Protocol (one JSON object per line, as `bench_tokenizer.serve`): argv[1] = the JSON list of
(preset, batch, size) cases, which must all be "small" (the fixture's config is the only one
both codes build from the same weights); prints "ready", then for each index read on stdin
times one encode (`DualViTok.encode`) and one decode from indices (`DualViTok.decode_code`).

Two things are worked around here, outside their code: their `tokenizer/__init__.py` imports
the training losses (LPIPS, torchvision, absent here), so the package is opened without running
it; and `timm` (for `trunc_normal_` initialisation only) is replaced by torch's function.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "dualvitok_public"


def _open_their_package(src: Path) -> None:
    root = src / "vision_tokenizer"
    sys.path.insert(0, str(root))
    package = types.ModuleType("tokenizer")
    package.__path__ = [str(root / "tokenizer")]
    sys.modules["tokenizer"] = package
    import importlib.machinery

    stubs = {name: types.ModuleType(name) for name in ("timm", "timm.models", "timm.models.layers")}
    for name, module in stubs.items():  # a spec, so that transformers' package probes do not fail on it
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    stubs["timm"].models, stubs["timm.models"].layers = stubs["timm.models"], stubs["timm.models.layers"]
    stubs["timm.models.layers"].trunc_normal_ = torch.nn.init.trunc_normal_
    sys.modules.update(stubs)


def build_theirs(src: Path):
    """Their DualViTok from the fixture's config, loaded strictly with the fixture's weights."""
    _open_their_package(src)
    from tokenizer.builder import build_vq_model
    import tokenizer.quantizer  # noqa: F401  (registers SimVQ)
    from tokenizer.dualvitok_model import DualViTok  # noqa: F401  (registers the class)
    from tokenizer.qwen2vit.configuration_qwen2_vl import Qwen2VLVisionConfig
    from tokenizer.qwen2vit.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
    from utils.registry_utils import Config

    meta = json.loads(FIXTURE.with_suffix(".json").read_text())
    weights = {k[len("weights."):]: v for k, v in load_file(str(FIXTURE.with_suffix(".safetensors"))).items()
               if k.startswith("weights.")}
    vit_dir = Path(tempfile.mkdtemp(prefix="authors_vit_"))
    # (initializer_range: their init reads it; the fixture weights replace the init anyway)
    vit = Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(**meta["vit_config"], initializer_range=0.02))
    vit.save_pretrained(vit_dir)  # their SemanticEncoder loads the ViT by from_pretrained(folder)
    config = json.loads(json.dumps(meta["dualvitok_config"]))
    config["semantic_encoder"]["semantic_encoder"] = str(vit_dir)
    model = build_vq_model(Config(dict(vq_model=dict(type="DualViTok", config=config))).vq_model)
    model.load_state_dict(weights, strict=True)
    return model.eval()


class TheirTimer:
    @torch.no_grad()
    def __init__(self, model, batch: int, size: int):
        self.model = model
        self.images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        (_, _, self.semantic_ids, _), (_, _, self.pixel_ids) = model.encode(self.images)  # warm-up
        model.decode_code(self.semantic_ids, self.pixel_ids)

    @torch.no_grad()
    def once(self) -> dict:
        start = time.perf_counter()
        self.model.encode(self.images)
        middle = time.perf_counter()
        self.model.decode_code(self.semantic_ids, self.pixel_ids)
        return {"encode_s": middle - start, "decode_s": time.perf_counter() - middle}


def main(argv: list[str]) -> int:
    src, cases, threads = Path(argv[0]), json.loads(argv[1]), int(argv[2])
    torch.set_num_threads(threads)
    if any(preset != "small" for preset, _, _ in cases):
        raise SystemExit("the authors' code is timed on the fixture's 'small' config only")
    model = build_theirs(src)
    timers = [TheirTimer(model, batch, size) for _, batch, size in cases]
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(timers[int(line)].once()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
