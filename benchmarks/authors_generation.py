"""Time the AUTHORS' text-to-image decoding (their released ILLUME code, unmodified) on a random-
weight model, for `bench_generation.py --authors-src`. Runs in an environment with their stack:

    python -m venv --system-site-packages /work/venv-authors
    /work/venv-authors/bin/pip install "transformers==4.44.2" einx einops    # their pins
    git -C <mirror> archive HEAD | tar -x -C /work/authors_src               # illume-unified-mllm/ILLUME_plus
    python benchmarks/bench_generation.py --preset 384m --size 256x256 --batch 1 4 --threads 2 \
        --authors-src /work/authors_src --authors-python /work/venv-authors/bin/python

What runs is their text-to-image path of `scripts/inference_text_to_image.sh` ->
`generation_eval/main.py` -> `ILLUME.inference_mllm` (generation_eval/models/illume.py): their
`IllumeQwen2ForCausalLM` (illume/model/language_model/illume_qwen2.py), their
`ILLUME.prepare_inference_config` / `prepare_interleaved_logit_processor` (one
`InterleavedLogitsProcessor`: CFG as a second, unbatched forward on the unconditional prompt
inside the processor, the image-layout masks, their per-level temperature / top-k / top-p), their
`pad_sequence` (left padding, as their Qwen2 tokenizer is loaded) and `calculate_image_token_num`,
and their `generate` call with the same arguments (do_sample=True, temperature / top_k / top_p of
the inference config, so transformers' own warpers run after their processor, use_cache=True).
The lines of `inference_mllm` before and after `generate` (chat template + text tokenisation,
regex parsing of the decoded text) are not run: the prompt ids come from OUR processor (sent
over the protocol), so both codes decode exactly the same prompt ids, and the output ids are
counted directly.

Protocol (one JSON object per line): argv[1] = the authors' release (the folder holding ILLUME/
and vision_tokenizer/), argv[2] = JSON setup: {"shape": Qwen2 config fields (vocab_size,
hidden_size, ...), "layout": our token layout (special ids, code ranges), "threads": N,
"weights": a safetensors file of OUR language model's state dict or null (random init, seed 0)}.
Builds the model (fp32, eval), prints "ready", then for each request line
    {"prompts": [[ids], ...], "unconditional": [ids], "pad_token_id": int, "size": [H, W],
     "guidance_scale": g, "temperature": t, "top_k": k, "top_p": p, "max_new_tokens": cap,
     "do_sample": true, "seed": s}          (do_sample false: their greedy decoding)
runs ONE text-to-image generation of the whole batch and prints
    {"seconds": wall, "tokens": new tokens per row, "batch": B, "peak_mem_mb", "extra_mem_mb",
     "ids": [[generated ids], ...]}
(peak memory: resident set size sampled during the call, by peak_memory.PeakMemory as for ours).
Batches: their processor reads its decoding state from row 0 only (SPEC §6), which is right
here because every row of a text-to-image batch has the same layout; batch > 1 runs as in their
eval script (batch 8), rows left-padded, one unconditional prompt repeated per row.

Worked around, from outside their code (nothing of theirs is copied or edited):
- `torchvision` is absent here: a stub module stands in for it. Their
  `illume/data/aspect_ratio_utils.py` imports `torchvision.transforms` at module level for image
  cropping (editing / understanding inputs), which text-to-image never calls.
- `timm` (imported by their vision-tokenizer package for `trunc_normal_`) is replaced by torch's
  function, and their `tokenizer/__init__.py` (training losses) is not run, as in
  authors_tokenizer.py.
- No checkpoint: the MLLM is their class built from a config at the requested shape with random
  (or OUR, see "weights") weights. The config has no `mm_vision_tower`, so their class builds no
  vision tower or projector (text-to-image never uses them). attn_implementation is "sdpa".
- First generated token. Their processor leaves the first token (the one after the resolution
  tag) to the model, over the whole text vocabulary; a trained checkpoint answers
  `<start_of_image>`, a random one would write text and never start the image. One extra
  processor, AFTER theirs, keeps only `<start_of_image>` at that first step (and does nothing
  afterwards); everything else (CFG start, layout, sampling) is theirs.
- Token ids. Their ids are hard-coded for Qwen2.5's 151,665-entry tokenizer (SPEC §3). With the
  full vocabulary (presets mid / 384m) our layout has the same image ids and nothing is changed;
  with a smaller layout (preset tiny) the module-level constants their processor is built from
  (`special_tokens_dict`, `level0_range`, `level1_range` of generation_eval/models/illume.py)
  are set to our layout's ids before the processor is built (`end_of_text`, i.e. `<|im_end|>`,
  included). `end_of_text` alone does not count as a difference: it only matters in their text
  phase, and our stand-in tokenizer of Qwen2.5's length numbers `<|im_end|>` differently.
- Cap: `max_new_tokens` is min(the request's cap, the image frame), where their code asks for
  the frame + 4 (a trained model stops at `<|im_end|>` after `<end_of_image>`; a random one
  would go on writing text), so both codes time exactly the image frame.
- Their checkpoint's generation config (Qwen2.5-Instruct's: repetition_penalty 1.05, SPEC §3)
  is not there; the model's default one is used (no repetition penalty), as our engine's
  default text-to-image settings.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import time
import types
from pathlib import Path

import torch
from peak_memory import PeakMemory  # benchmarks/peak_memory.py (this script's folder is on sys.path)


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # transformers probes packages by spec
    return module


def _open_their_code(src: Path) -> None:
    sys.path[:0] = [str(src / "ILLUME"), str(src / "vision_tokenizer")]  # as their scripts' PYTHONPATH
    package = types.ModuleType("tokenizer")  # their vision tokenizer package, without its __init__
    package.__path__ = [str(src / "vision_tokenizer" / "tokenizer")]
    sys.modules["tokenizer"] = package
    stubs = {name: _stub(name) for name in ("timm", "timm.models", "timm.models.layers",
                                            "torchvision", "torchvision.transforms")}
    stubs["timm"].models, stubs["timm.models"].layers = stubs["timm.models"], stubs["timm.models.layers"]
    stubs["timm.models.layers"].trunc_normal_ = torch.nn.init.trunc_normal_
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)


def build_theirs(setup: dict):
    """Their IllumeQwen2ForCausalLM at the requested shape, fp32, eval: seeded random weights, or
    the state dict in setup["weights"] (loaded strictly, the tied LM head apart)."""
    from illume.model.language_model.illume_qwen2 import ILLUMEQwen2Config, IllumeQwen2ForCausalLM

    torch.manual_seed(0)
    config = ILLUMEQwen2Config(**setup["shape"], attn_implementation="sdpa")
    if not setup.get("weights"):
        return IllumeQwen2ForCausalLM(config).float().eval()
    from safetensors.torch import load_file
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():  # every parameter is loaded below
        model = IllumeQwen2ForCausalLM(config).float().eval()
    missing, unexpected = model.load_state_dict(load_file(setup["weights"]), strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise SystemExit(f"weights do not fit their model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def _adopt_layout(illume_module, layout: dict) -> list[str]:
    """Point the module-level token ids their processor is built from at OUR layout where they
    differ (preset tiny); returns what was changed."""
    theirs = illume_module.special_tokens_dict
    changed = [key for key in ("start_of_image", "end_of_image", "start_of_level0", "end_of_level0",
                               "start_of_level1", "end_of_level1", "end_of_line") if theirs[key] != layout[key]]
    ranges = {"level0_range": tuple(layout["semantic_range"]), "level1_range": tuple(layout["pixel_range"])}
    changed += [name for name, value in ranges.items() if tuple(getattr(illume_module, name)) != value]
    if changed:
        new = dict(theirs, **{k: layout[k] for k in theirs if k in layout}, **ranges)
        illume_module.special_tokens_dict = new
        illume_module.level0_range, illume_module.level1_range = ranges["level0_range"], ranges["level1_range"]
    return changed


class _FirstTokenStartsTheImage:
    """Appended AFTER their processor: at the first step only, keep `<start_of_image>` alone
    (what a trained checkpoint picks there; see the module docstring)."""

    def __init__(self, start_of_image: int):
        self.start_of_image = start_of_image

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == 0:  # their generate passes inputs_embeds only: no prompt ids here
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.start_of_image] = 0.0
            return forced
        return scores


class TheirTextToImage:
    """One `ILLUME.inference_mllm` generation, from prompt ids on (see the module docstring)."""

    def __init__(self, model, layout: dict):
        import generation_eval.models.illume as illume_module
        from transformers import LogitsProcessorList, set_seed

        self.illume = illume_module
        self.LogitsProcessorList, self.set_seed = LogitsProcessorList, set_seed
        self.changed = _adopt_layout(illume_module, layout)
        # Their ILLUME object without its __init__ (which loads a checkpoint, a DualViTok and the
        # SDXL decoder): the methods used here read only these attributes.
        self.runner = illume_module.ILLUME.__new__(illume_module.ILLUME)
        self.runner.mllm_model, self.runner.device, self.runner.seed = model, model.device, 42
        self.start_of_image = illume_module.special_tokens_dict["start_of_image"]

    @torch.no_grad()
    def once(self, request: dict) -> dict:
        runner, illume = self.runner, self.illume
        h, w = request["size"]
        start = time.perf_counter()
        # -- ILLUME.prepare_inference_config, as generation_eval/main.py calls it
        config = runner.prepare_inference_config(temperature=request["temperature"], top_k=request["top_k"],
                                                 top_p=request["top_p"], llm_cfg_scale=request["guidance_scale"])
        config.resolution = (h, w)
        # -- ILLUME.inference_mllm, text-to-image, from the token ids on
        runner.token_nums, max_new_tokens, runner.h1, runner.w1, runner.h2, runner.w2 = \
            illume.calculate_image_token_num(h, w)
        frame = max_new_tokens - 4  # theirs: the frame + <|im_end|> and slack (see the docstring)
        config.max_new_tokens = min(int(request["max_new_tokens"]), frame)
        pad = int(request["pad_token_id"])
        left = types.SimpleNamespace(padding_side="left")  # their Qwen2 tokenizer is loaded with it
        input_ids = illume.pad_sequence(left, [torch.tensor(p, dtype=torch.long) for p in request["prompts"]],
                                        batch_first=True, padding_value=pad).to(runner.device)
        attention_masks = input_ids.ne(pad).to(runner.device)
        unconditional_token_ids = torch.tensor([request["unconditional"]], dtype=torch.long)
        unconditional_token_ids = unconditional_token_ids.repeat(input_ids.shape[0], 1)
        logit_processor = runner.prepare_interleaved_logit_processor(config, unconditional_token_ids, None, None)
        logit_processor.append(_FirstTokenStartsTheImage(self.start_of_image))
        self.set_seed(int(request.get("seed", runner.seed)), deterministic=False)
        output_ids = runner.mllm_model.generate(
            input_ids,
            attention_mask=attention_masks,
            images=None,
            image_sizes=None,
            pad_token_id=pad,
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            logits_processor=self.LogitsProcessorList(logit_processor),
            use_cache=True,
            do_sample=bool(request.get("do_sample", True)),
        )
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "tokens": int(output_ids.shape[1]), "batch": int(output_ids.shape[0]),
                "ids": output_ids.tolist()}


def main(argv: list[str]) -> int:
    src, setup = Path(argv[0]), json.loads(argv[1])
    torch.set_num_threads(int(setup["threads"]))
    _open_their_code(src)
    model = build_theirs(setup)
    runner = TheirTextToImage(model, setup["layout"])
    if runner.changed:
        print(f"authors_generation: their hard-coded {', '.join(runner.changed)} set to our layout's ids",
              file=sys.stderr, flush=True)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        with PeakMemory(torch.device("cpu")) as memory:
            result = runner.once(json.loads(line))
        result.update(peak_mem_mb=round(memory.peak, 1), extra_mem_mb=round(memory.peak - memory.start, 1))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
