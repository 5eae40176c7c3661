"""`illume_plus.Pipeline`: understanding, generation, editing and multi-turn chat.

    pipe = Pipeline(model)                         # an IllumePlus (with its processor)
    [result] = pipe.generate(["a red circle"], size=(512, 512), guidance_scale=2.0, seed=0)
    result.semantic_ids, result.pixel_ids, result.size, result.image   # (h1,w1), (h2,w2), (H,W), PIL
    edited = pipe.edit(image, "make the sky blue", guidance_scale=1.5)
    answer = pipe.understand(image, "What is in the picture?")
    chat = pipe.chat(); chat.generate("a cat"); chat.send("What colour is it?"); chat.edit("make it black")
    pipe = Pipeline.from_pretrained()              # the packaged default model; or a path (pipeline_folder.py)
    pipe.save_pretrained("my_pipeline")            # pipeline.json + mllm/ + vision_tokenizer/ [+ diffusion_decoder/]

All decoding runs through one `DecodingEngine` call per method call (every prompt of a
`generate` call in one batch). Image codes are turned into pixels by DualViTok's pixel
decoder (`decoder="pixel"`) or by the diffusion decoder (`decoder="diffusion"` or a
`DiffusionDecoderPipeline`), which returns images at twice the token resolution.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from .mllm.engine import DecodingEngine, GenerationRequest
from .mllm.generation_config import GenerationDefaults
from .mllm.limits import check_fits_context, check_guidance_scale, check_image_size, check_text_length
from .mllm.sampling import GenerationSettings, make_generator

__all__ = ["Pipeline", "ImageResult", "ChatSession"]

# Their evaluation's reply budget (lmms-eval's max_new_tokens for the released model).
UNDERSTANDING_MAX_NEW_TOKENS = 1024
# Their scripts' diffusion-decoder steps (their web app uses 20).
DIFFUSION_STEPS = 50

# Models with at most this many text rows (the "tiny" preset has 512) may fall back to the
# built-in tiny text tokenizer when no processor is given.
TINY_TEXT_VOCAB_LIMIT = 1024


@dataclass
class ImageResult:
    """One generated image: its codes (straight from the generated ids) and pixels."""

    semantic_ids: torch.Tensor  # (h1, w1) semantic codebook indices
    pixel_ids: torch.Tensor  # (h2, w2) pixel codebook indices
    size: tuple[int, int]  # (H, W) of the token grid's image (the diffusion decoder returns 2x)
    image: object = None  # PIL.Image.Image (an edit: at its source's size), or None with decode=False

    def codes(self, resolution_tag: bool = True):
        """The codes as a processor `ImageCodes` part, to put this image back into a prompt
        (with its resolution tag as an assistant reply; without it in a user turn, where the
        prompt templates write the tag themselves)."""
        from .mllm.processor import ImageCodes

        return ImageCodes(self.semantic_ids, self.pixel_ids, *self.size, resolution_tag=resolution_tag)


def _is_size(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value)


class Pipeline:
    """Understanding, generation, editing and chat with one IllumePlus model.

    model: an `IllumePlus`.
    processor: its `IllumePlusProcessor` (default: `model.processor` if set, else — for
        random-weight models only — the built-in tiny text tokenizer, with a warning).
    vision_tokenizer: the DualViTok whose pixel decoder turns codes into pixels (default:
        one built from `model.config` sharing the model's encoders; its decoder weights are
        random, with a warning).
    decoder: "pixel" (DualViTok), "diffusion" (a diffusion decoder with random weights, for
        trying the path), or a `DiffusionDecoderPipeline` (2x super-resolution decoding,
        `diffusion_steps` steps at `diffusion_guidance_scale`).

    Decoding defaults follow the authors' scripts (docs/reproducing.md): the "authors"
    sampling preset (`preset="clean"` applies each setting once), the checkpoint's
    generation_config.json (`model.generation_defaults`: repetition penalty 1.05 and stop ids
    for the release), replies stop at `<|im_end|>` or `<|endoftext|>`.
    """

    def __init__(self, model, vision_tokenizer=None, decoder="pixel", processor=None,
                 diffusion_steps: int = DIFFUSION_STEPS, diffusion_guidance_scale: float = 2.0,
                 speculative=True):
        self.model = model
        # images by speculative Jacobi decoding (lossless: same distribution, fewer forwards;
        # docs/generation.md) unless False; True or a SpeculativeConfig
        self.speculative = speculative
        self.processor = processor if processor is not None else _default_processor(model)
        if not (decoder in ("pixel", "diffusion") or callable(decoder)):
            raise ValueError(f"decoder must be 'pixel', 'diffusion' or a DiffusionDecoderPipeline, got {decoder!r}")
        self.generation_defaults = getattr(model, "generation_defaults", None) or GenerationDefaults()
        self.engine = DecodingEngine(model, self.processor, stop_token_ids=self.generation_defaults.eos_token_ids)
        self.config = model.config
        self.vision_tokenizer = vision_tokenizer
        self.decoder = decoder
        self.diffusion_steps = diffusion_steps
        self.diffusion_guidance_scale = diffusion_guidance_scale
        self._decoder_ready = False
        self.card = None  # the PipelineCard of a loaded pipeline folder (default size, sampling defaults)
        # progress(done, total) after every decoding step of an image request (progress bars)
        self.on_image_step: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------ folders
    @classmethod
    def from_pretrained(cls, path=None, **kwargs) -> "Pipeline":
        """A pipeline folder, or the authors' release (detected), or with no path the packaged
        default model; keyword arguments as `pipeline_folder.load_pipeline` (vision_tokenizer=,
        diffusion_decoder=, official=, device=, dtype=)."""
        from .pipeline_folder import load_pipeline

        return load_pipeline(path, **kwargs)

    def save_pretrained(self, directory, card=None):
        """Write this pipeline as a pipeline folder (see `pipeline_folder.py`)."""
        from .pipeline_folder import save_pipeline

        return save_pipeline(self, directory, card)

    def _defaults(self, task: str, sampling: dict) -> dict:
        """The folder's sampling defaults for `task`, overridden by the caller's own."""
        return {**(self.card.defaults(task) if self.card is not None else {}), **sampling}

    def default_size(self) -> tuple[tuple[int, int], bool]:
        """(H, W) of `generate` without a size, and whether it lies outside the generation sizes."""
        size = tuple(self.card.default_size) if self.card is not None else (512, 512)
        return size, size not in self.config.generation_sizes

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: str | Sequence[str], size=None, guidance_scale: float | None = None,
                 seed: int | Sequence[int] = 0, *, any_size: bool = False, decode: bool = True,
                 speculative=None, **sampling):
        """Text-to-image. One `ImageResult` per prompt (a single result for a single string).

        size: (H, W) for every prompt, or one (H, W) per prompt (default: the model's
            default size, see `default_size()`, else 512x512). Each is matched to the
            nearest of the 11 generation sizes by aspect ratio, unless `any_size=True` (any
            multiple of 64 up to 1024, e.g. small sizes for tests).
        seed: an int (prompt i uses seed + i) or one seed per prompt. A prompt's image
            depends only on its prompt, size, settings and seed, not on its batch mates.
        guidance_scale: CFG weight (default: the folder's, else 2.0); 1.0 skips the unconditional rows.
        speculative: True/False/a SpeculativeConfig for this call (default: the pipeline's,
            True): speculative Jacobi decoding draws from the same distribution with fewer
            forwards, but not the same image as sequential decoding for a given seed.
        sampling: `preset` ("authors", the default, or "clean") and overrides of its
            settings (temperature, top_k, top_p, repetition_penalty, greedy, or per phase as
            semantic_top_k=...); a pipeline folder's card may set defaults for them.
        """
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        sampling = self._defaults("generate", sampling)
        default_guidance = sampling.pop("guidance_scale", 2.0)
        guidance_scale = default_guidance if guidance_scale is None else guidance_scale
        if size is None:
            size, outside = self.default_size()
            any_size = any_size or outside
        check_guidance_scale(guidance_scale)
        for prompt in prompts:
            self._check_text(prompt, "prompt")
        sizes = self._target_sizes(size, len(prompts), any_size)
        seeds = self._seeds(seed, len(prompts))
        settings = self._settings("text_to_image", sampling)
        requests = []
        for prompt, target, s in zip(prompts, sizes, seeds):
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be strings, got {type(prompt).__name__}")
            uncond = self.processor.encode_text_to_image(None, size=target) if guidance_scale != 1.0 else None
            requests.append(GenerationRequest(
                prompt=self.processor.encode_text_to_image(prompt, size=target), unconditional_prompt=uncond,
                image_size=target, guidance_scale=guidance_scale, settings=settings, seed=s))
        results = self._run_image_requests(requests, seeds, decode, speculative)
        return results[0] if single else results

    def edit(self, image, instruction: str | Sequence[str], guidance_scale: float | None = None,
             seed: int | Sequence[int] = 0, *, size=None, any_size: bool = False, decode: bool = True,
             speculative=None, **sampling):
        """Instruction editing. `image` is a PIL image, a (3,H,W) tensor in [-1,1] or an
        `ImageResult` (its decoded pixels); it is read as continuous features. A list of images
        with a list of instructions edits a batch. The model generates at the nearest
        generation size of the source (or `size`), the source LANCZOS-fitted into it and
        padded with white; `result.image` is then cropped and resized back to the source's
        size (`result.size` stays the generated grid's). The unconditional row gets the
        reconstruction prompt with the same source image. `speculative` as in `generate`.
        """
        single = isinstance(instruction, str)
        images = [image] if single else list(image)
        instructions = [instruction] if single else list(instruction)
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
        seeds = self._seeds(seed, len(images))
        sampling = self._defaults("edit", sampling)
        default_guidance = sampling.pop("guidance_scale", 1.5)
        guidance_scale = default_guidance if guidance_scale is None else guidance_scale
        check_guidance_scale(guidance_scale)
        for text in instructions:
            self._check_text(text, "instruction")
        settings = self._settings("editing", sampling)
        requests = []
        for source, text, s in zip(images, instructions, seeds):
            target = self._edit_size(source, size, any_size)
            cond, uncond, _ = self._encode_edit(source, text, target, with_uncond=guidance_scale != 1.0)
            requests.append(GenerationRequest(prompt=cond, unconditional_prompt=uncond, image_size=cond.target_size,
                                              guidance_scale=guidance_scale, settings=settings, seed=s))
        results = self._run_image_requests(requests, seeds, decode, speculative)
        self._restore_source_sizes(results, requests)
        return results[0] if single else results

    # ------------------------------------------------------------------ understanding
    def understand(self, image_or_images, question: str, max_new_tokens: int = UNDERSTANDING_MAX_NEW_TOKENS, seed: int = 0,
                   stream: Callable[[str], None] | None = None, **sampling) -> str:
        """Answer `question` about one image or several. Greedy by default; giving
        temperature, top_k or top_p samples (seeded by `seed`). `stream(piece)` receives the
        reply as it is decoded."""
        pieces = []
        for piece in self.iter_understand(image_or_images, question, max_new_tokens, seed, **sampling):
            pieces.append(piece)
            if stream is not None:
                stream(piece)
        return "".join(pieces)

    def iter_understand(self, image_or_images, question: str, max_new_tokens: int = UNDERSTANDING_MAX_NEW_TOKENS, seed: int = 0,
                        **sampling) -> Iterator[str]:
        """`understand`, yielding the reply piece by piece as it is decoded."""
        self._check_text(question, "question")
        images = list(image_or_images) if isinstance(image_or_images, (list, tuple)) else [image_or_images]
        images = [self._user_image(i) for i in images]
        sampling = self._defaults("understand", sampling)
        if len(images) == 1:
            prompt = self.processor.encode_understanding(images[0], question)
        else:
            user = _fill_template(self.config.understanding_template, images, question=question)
            prompt = self.processor.encode_chat([{"role": "user", "content": user}])
        return self._iter_text(prompt, max_new_tokens, seed, self._settings("understanding", sampling))

    # ------------------------------------------------------------------ chat
    def chat(self, messages: list[dict] | None = None) -> "ChatSession":
        """A multi-turn conversation; `messages` seeds its history (processor message format)."""
        return ChatSession(self, list(messages or []))

    # ------------------------------------------------------------------ internals
    def _settings(self, task: str, sampling: dict) -> GenerationSettings:
        """The task's preset, the checkpoint's repetition penalty, then the caller's overrides."""
        sampling = dict(sampling)
        preset = sampling.pop("preset", "authors")
        defaults = GenerationSettings.for_task(task, preset).updated(
            repetition_penalty=self.generation_defaults.repetition_penalty)
        if task == "understanding":
            return _text_settings(defaults, sampling)
        return defaults.updated(**sampling)

    def _check_text(self, text, what: str) -> None:
        check_text_length(text, self.config.max_position_embeddings, what)

    def _check_requests(self, requests) -> None:
        """Every request must fit the model's context (prompt + what it will write)."""
        def frame_tokens(height, width):
            return self.processor.frame_spec(height, width).num_tokens

        for request in requests:
            check_fits_context(request, self.config.max_position_embeddings, frame_tokens)

    def _iter_text(self, prompt, max_new_tokens, seed, settings) -> Iterator[str]:
        request = GenerationRequest(prompt=prompt, settings=settings, seed=seed, max_new_tokens=max_new_tokens)
        self._check_requests([request])
        stream = self.engine.stream([request])
        ids: list[int] = []
        emitted = ""
        while True:
            try:
                _, tokens = next(stream)
            except StopIteration:
                break
            token = int(tokens[0])
            if token in self.engine.stop_token_ids:
                break
            ids.append(token)
            text = self.processor.decode_text(torch.tensor(ids))
            # hold back an incomplete UTF-8 sequence until its last byte arrives
            if len(text) > len(emitted) and not text.endswith("\ufffd"):
                yield text[len(emitted):]
                emitted = text
        stream.close()
        text = self.processor.decode_text(torch.tensor(ids, dtype=torch.long))
        if len(text) > len(emitted):
            yield text[len(emitted):]

    def _run_image_requests(self, requests, seeds, decode: bool, speculative=None) -> list[ImageResult]:
        self._check_requests(requests)
        on_step = None
        if self.on_image_step is not None:
            from .mllm.engine import ImageSchedule

            total = max(len(ImageSchedule.build(self.processor.layout, self.processor.frame_spec(*r.image_size)).tokens)
                        for r in requests)
            on_step = lambda step, tokens: self.on_image_step(step + 1, total)  # noqa: E731
        speculative = self.speculative if speculative is None else speculative
        outputs = self.engine.generate(requests, on_step=on_step, speculative=speculative)
        results = [ImageResult(o.images[0].semantic_ids, o.images[0].pixel_ids, o.images[0].size) for o in outputs]
        if decode:
            for result, image in zip(results, self.decode_images(results, seeds)):
                result.image = image
        return results

    def decode_images(self, results: Sequence[ImageResult], seeds: Sequence[int] | None = None) -> list:
        """PIL images for code grids (any mix of sizes), with the configured decoder."""
        if not results:
            return []
        self._prepare_decoder()
        if self.decoder == "pixel":
            return self._decode_with_tokenizer(results)
        seeds = seeds if seeds is not None else [0] * len(results)
        device = self.decoder.device
        return self.decoder(semantic_ids=[r.semantic_ids.to(device) for r in results],
                            pixel_ids=[r.pixel_ids.to(device) for r in results],
                            num_inference_steps=self.diffusion_steps, guidance_scale=self.diffusion_guidance_scale,
                            generator=[make_generator(s, device) for s in seeds])

    def _decode_with_tokenizer(self, results) -> list:
        tok = self.vision_tokenizer
        device = next(tok.parameters()).device
        images: list = [None] * len(results)
        by_size: dict[tuple, list[int]] = {}
        for i, r in enumerate(results):
            by_size.setdefault(tuple(r.size), []).append(i)
        with torch.no_grad():
            for positions in by_size.values():
                semantic = torch.stack([results[i].semantic_ids for i in positions]).to(device)
                pixel = torch.stack([results[i].pixel_ids for i in positions]).to(device)
                pixels = tok.decode(semantic, pixel).float().clamp(-1, 1).cpu()
                decoded = self.processor.postprocess(pixels)
                decoded = decoded if isinstance(decoded, list) else [decoded]
                for i, image in zip(positions, decoded):
                    images[i] = image
        return images

    def _prepare_decoder(self) -> None:
        """Build the image decoder on first use (understanding never needs one)."""
        if self._decoder_ready:
            return
        if self.vision_tokenizer is None:
            self.vision_tokenizer = self._default_vision_tokenizer()
        self.vision_tokenizer.eval()  # training mode would inject code noise while decoding
        if self.decoder == "diffusion":
            self.decoder = self._random_diffusion_decoder()
        self._decoder_ready = True

    def _default_vision_tokenizer(self):
        """A DualViTok from model.config whose encoders are the model's own (its decoder and
        codebooks are random: only a trained tokenizer passed as vision_tokenizer= gives images)."""
        from .tokenizer.model import DualViTok

        tok = DualViTok(self.config.tokenizer)
        tower = getattr(self.model, "vision_tower", None)
        if tower is not None:
            tok.semantic_encoder.model = tower.semantic_encoder
            tok.pixel_encoder = tower.pixel_encoder
        warnings.warn("no vision_tokenizer given: decoding with a DualViTok whose decoder and codebooks have RANDOM "
                      "weights (encoders shared with the model); pass vision_tokenizer=DualViTok.from_pretrained(...)",
                      stacklevel=3)
        return tok.to(self.model.device)

    def _random_diffusion_decoder(self):
        from .diffusion.conditioning import CodeEmbedder
        from .diffusion.pipeline import DiffusionDecoderPipeline

        small = (self.config.semantic_codebook_size, self.config.pixel_codebook_size) == (256, 512)
        decoder = DiffusionDecoderPipeline.from_preset("tiny" if small else "sdxl")
        decoder.decoder.code_embedder.load_state_dict(CodeEmbedder.from_tokenizer(self.vision_tokenizer).state_dict())
        decoder.set_progress_bar_config(disable=True)
        warnings.warn("decoder='diffusion' without a DiffusionDecoderPipeline: using one with RANDOM UNet/VAE "
                      "weights; load one with DiffusionDecoderPipeline.from_pretrained(path)", stacklevel=3)
        return decoder.to(device=self.model.device)

    def _target_sizes(self, size, count: int, any_size: bool) -> list[tuple[int, int]]:
        sizes = [tuple(size)] * count if _is_size(size) else [tuple(s) for s in size]
        if len(sizes) != count or not all(_is_size(s) for s in sizes):
            raise ValueError(f"size must be (H, W) or a list of {count} (H, W) pairs, got {size!r}")
        return [self._check_size(s, any_size) for s in sizes]

    def _check_size(self, size: tuple[int, int], any_size: bool) -> tuple[int, int]:
        size = check_image_size(size)
        if any_size:
            tag_step = 64  # height/width tags exist for multiples of 64 (SPEC §3 Vocabulary)
            h, w = size
            if h % tag_step or w % tag_step or not (0 < h <= 1024 and 0 < w <= 1024):
                raise ValueError(f"size {h}x{w}: with any_size=True each side must be a multiple of 64 up to 1024")
            return size
        if size in self.config.generation_sizes:
            return size
        return tuple(self.processor.nearest_generation_size(*size))

    def _edit_size(self, source, size, any_size: bool) -> tuple[int, int] | None:
        """The output size asked for, a generated source's own, or None: the processor takes the
        generation size nearest the (upright) source's aspect ratio."""
        if size is not None:
            return self._check_size(tuple(size), any_size)
        if isinstance(source, ImageResult):
            return tuple(source.size)
        default, outside = self.default_size()
        if outside:  # a model made for one small size (its folder's default) edits at that size
            return self._check_size(default, any_size=True)
        return None

    def _encode_edit(self, source, instruction, size, with_uncond: bool, history=()):
        """Conditional (edit) and unconditional (reconstruct, same image) prompts, and the edit's
        user message (for a chat's history). The source is fitted to `size` as their inference
        does (processor.prepare_generation_image); the prompts carry how (`source_resize`)."""
        pixels, info = self.processor.prepare_generation_image(self._user_image(source), size)
        size = info.size
        tag = self.processor.layout.resolution_tag_text(*size)

        def encode(template, **fields):
            user = {"role": "user", "content": _fill_template(template, [pixels], resolution_tag=tag, **fields)}
            sequence = self.processor.encode_chat([*history, user], assistant_prefix=tag)
            sequence.target_size, sequence.source_resize = tuple(size), info
            return sequence, user

        cond, user = encode(self.config.edit_template, instruction=instruction)
        uncond = encode(self.config.unconditional_edit_template)[0] if with_uncond else None
        return cond, uncond, user

    def _user_image(self, image):
        """An image for a user turn, read as continuous features (as every user image in the
        authors' app): a generated `ImageResult` enters as its decoded pixels."""
        if not isinstance(image, ImageResult):
            return image
        return image.image if image.image is not None else self.decode_images([image])[0]

    def _restore_source_sizes(self, results, requests) -> None:
        """Edited images back to their sources' sizes (the padding cropped off)."""
        for result, request in zip(results, requests):
            if result.image is not None and request.prompt.source_resize is not None:
                result.image = self.processor.postprocess(result.image, request.prompt.source_resize)

    @staticmethod
    def _seeds(seed, count: int) -> list:
        if isinstance(seed, (list, tuple)):
            if len(seed) != count:
                raise ValueError(f"{len(seed)} seeds for {count} requests")
            return list(seed)
        if isinstance(seed, torch.Generator):
            if count != 1:
                raise ValueError("a single torch.Generator can seed a single request; pass one seed per request")
            return [seed]
        if seed is None:
            return [None] * count  # fresh random seeds
        return [int(seed) + i for i in range(count)]


@dataclass
class ChatSession:
    """A conversation in which a later turn can discuss or edit an image generated earlier.

    The assistant turn that produced an image keeps the codes the model wrote (a discrete
    frame); a later user turn that asks about or edits it reads its decoded pixels as
    continuous features, like every user image in the authors' app (the paper's Table 6:
    discrete input understands worse).

    send(text, images=...) -> str; generate(prompt, size=...) -> ImageResult;
    edit(instruction, image=None) -> ImageResult (default: the last image of the chat).
    For CFG the unconditional context is the same history with the current user message
    replaced by the unconditional prompt.
    """

    pipeline: Pipeline
    messages: list = field(default_factory=list)
    images: list = field(default_factory=list)  # ImageResults generated in this chat

    def send(self, text: str, images: Sequence = (), max_new_tokens: int = UNDERSTANDING_MAX_NEW_TOKENS, seed: int = 0,
             stream: Callable[[str], None] | None = None, **sampling) -> str:
        self.pipeline._check_text(text, "message")
        if images:  # the understanding prompt: "{image}\n{question}"
            content = _fill_template(self.pipeline.config.understanding_template,
                                     [self.pipeline._user_image(i) for i in images], question=text)
        else:
            content = text
        user = {"role": "user", "content": content}
        prompt = self.pipeline.processor.encode_chat([*self.messages, user])
        settings = self.pipeline._settings("understanding", sampling)
        pieces = []
        for piece in self.pipeline._iter_text(prompt, max_new_tokens, seed, settings):
            pieces.append(piece)
            if stream is not None:
                stream(piece)
        reply = "".join(pieces)
        self.messages += [user, {"role": "assistant", "content": reply}]
        return reply

    def generate(self, prompt: str, size=None, guidance_scale: float = 2.0, seed: int = 0, *,
                 any_size: bool = False, decode: bool = True, **sampling) -> ImageResult:
        pipe, proc, config = self.pipeline, self.pipeline.processor, self.pipeline.config
        if size is None:  # the model's default size
            size, outside = pipe.default_size()
            any_size = any_size or outside
        check_guidance_scale(guidance_scale)
        pipe._check_text(prompt, "prompt")
        target = pipe._check_size(tuple(size), any_size)
        tag = proc.layout.resolution_tag_text(*target)

        def encode(text):
            return proc.encode_chat([*self.messages, {"role": "user", "content": text}], assistant_prefix=tag)

        user_text = config.text_to_image_template.format(resolution_tag=tag, caption=prompt)
        uncond = None
        if guidance_scale != 1.0:
            uncond = encode(config.unconditional_image_template.format(resolution_tag=tag))
        request = GenerationRequest(prompt=encode(user_text), unconditional_prompt=uncond, image_size=target,
                                    guidance_scale=guidance_scale, seed=seed,
                                    settings=pipe._settings("text_to_image", sampling))
        [result] = pipe._run_image_requests([request], [seed], decode)
        self._record({"role": "user", "content": user_text}, result)
        return result

    def edit(self, instruction: str, image=None, guidance_scale: float = 1.5, seed: int = 0, *, size=None,
             any_size: bool = False, decode: bool = True, **sampling) -> ImageResult:
        pipe = self.pipeline
        check_guidance_scale(guidance_scale)
        pipe._check_text(instruction, "instruction")
        if image is None:
            if not self.images:
                raise ValueError("nothing to edit: no image in this chat yet; pass image=...")
            image = self.images[-1]
        target = pipe._edit_size(image, size, any_size)
        cond, uncond, user = pipe._encode_edit(image, instruction, target, guidance_scale != 1.0,
                                               history=self.messages)
        request = GenerationRequest(prompt=cond, unconditional_prompt=uncond, image_size=cond.target_size,
                                    guidance_scale=guidance_scale, seed=seed,
                                    settings=pipe._settings("editing", sampling))
        [result] = pipe._run_image_requests([request], [seed], decode)
        self._record(user, result)
        pipe._restore_source_sizes([result], [request])
        return result

    def _record(self, user: dict, result: ImageResult) -> None:
        # the reply as the model wrote it: <height_H><width_W> and the frame of codes
        self.messages += [user, {"role": "assistant", "content": [result.codes(resolution_tag=True)]}]
        self.images.append(result)


def _default_processor(model):
    """The model's processor when one is attached; else, for a random-weight model whose
    vocabulary fits it, the built-in tiny text tokenizer (tests and demos)."""
    processor = getattr(model, "processor", None)
    if processor is not None:
        return processor
    from .mllm.processor import IllumePlusProcessor
    from .mllm.text_tokenizer import build_tiny_text_tokenizer

    if model.config.text_vocab_rows > TINY_TEXT_VOCAB_LIMIT:  # a real vocabulary needs its own tokenizer
        raise ValueError("the model has no processor attached; pass processor=IllumePlusProcessor.from_pretrained"
                         "(model_dir) (or illume_plus.mllm.official.load_official_processor for the authors' folder)")
    tokenizer = build_tiny_text_tokenizer()
    warnings.warn("no processor given: using the built-in tiny text tokenizer (only meaningful for random-weight "
                  "models); pass processor=IllumePlusProcessor.from_pretrained(model_dir)", stacklevel=3)
    return IllumePlusProcessor.from_text_tokenizer(tokenizer, model.config)


def _text_settings(defaults: GenerationSettings, sampling: dict) -> GenerationSettings:
    """Understanding settings: greedy, unless sampling options are given without `greedy`."""
    sampling = dict(sampling)
    wants_sampling = any(k in sampling for k in ("temperature", "top_k", "top_p", "text_temperature",
                                                 "text_top_k", "text_top_p"))
    if wants_sampling and "greedy" not in sampling and "text_greedy" not in sampling:
        sampling["text_greedy"] = False
    if "top_k" in sampling:  # in a text reply, top_k is the text phase's
        sampling.setdefault("text_top_k", sampling.pop("top_k"))
    return defaults.updated(**sampling)


def _fill_template(template: str, images: list, **fields) -> list:
    """Message parts from a prompt template with one `{image}` slot (filled by `images`)."""
    if template.count("{image}") != 1:
        raise ValueError(f"the prompt template needs exactly one {{image}} slot: {template!r}")
    before, after = template.split("{image}")
    parts = [before.format(**fields), *images, after.format(**fields)]
    return [p for p in parts if not (isinstance(p, str) and p == "")]

