"""From chat messages and images to model inputs, and from generated images back to pictures.

- Chat: Qwen ChatML. A message is {"role", "content"}; content is a string or a list of parts:
  text, an input image (PIL image or (3, H, W) tensor in [-1, 1]; read as continuous features)
  or `ImageCodes` (an image as DualViTok codes, e.g. generated in an earlier turn; read as code
  tokens). Labels supervise assistant replies with their `<|im_end|>` and newline.
- Task prompts (SPEC §3 Prompts), exactly as the authors' inference writes them.
- Images (images.py, PIL resampling as theirs): understanding at any resolution up to 768²
  (sides multiples of 16, bicubic); editing sources at the nearest of the 11 generation sizes,
  LANCZOS-fitted and padded with white (undone by `postprocess`), or cropped for training.
- `collate`: left padding with per-row position ids (the model reads the last column).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

from .config import IllumePlusConfig
from .frames import FrameSpec, frame_ids
from .images import (ResizeInfo, as_rgb_image, fit_to_anchor, image_to_tensor, nearest_anchor,
                     restore_source_size, tensor_to_pil, understanding_tensor)
from .vocab import CHAT_END, CHAT_START, TokenLayout, extend_tokenizer

IMAGE_PLACEHOLDER = "{image}"  # where a template puts its image


# ---------------------------------------------------------------------- data structures
@dataclass
class ImageCodes:
    """An image as DualViTok codes: semantic (h1, w1) and pixel (h2, w2) grids of an H x W image.
    In a sequence it becomes a discrete frame, preceded by its resolution tag."""

    semantic: torch.Tensor
    pixel: torch.Tensor
    height: int
    width: int
    resolution_tag: bool = True


@dataclass
class ImageSlots:
    """A continuous image of one sequence and where its features go."""

    pixel_values: torch.Tensor  # (3, H, W) in [-1, 1]
    semantic_positions: torch.Tensor  # (h1*w1,) indices into the sequence
    pixel_positions: torch.Tensor  # (h2*w2,)


@dataclass
class EncodedSequence:
    input_ids: torch.Tensor  # (L,) long
    labels: torch.Tensor  # (L,) long, ignore_index outside assistant replies
    images: list[ImageSlots] = field(default_factory=list)
    target_size: tuple[int, int] | None = None  # the image size a generation prompt asks for
    source_resize: ResizeInfo | None = None  # how an editing source was resized

    def __len__(self) -> int:
        return self.input_ids.numel()


@dataclass
class BatchImage:
    row: int
    pixel_values: torch.Tensor
    semantic_positions: torch.Tensor  # column indices in the padded batch
    pixel_positions: torch.Tensor


@dataclass
class MultimodalBatch:
    input_ids: torch.Tensor  # (B, L), padding = pad id
    attention_mask: torch.Tensor  # (B, L) long, 0 on padding
    position_ids: torch.Tensor  # (B, L) 0.. over each row's real tokens, 0 on padding
    labels: torch.Tensor | None  # (B, L) or None
    images: list[BatchImage] = field(default_factory=list)

    def to(self, device) -> "MultimodalBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return MultimodalBatch(
            move(self.input_ids), move(self.attention_mask), move(self.position_ids), move(self.labels),
            [replace(i, pixel_values=i.pixel_values.to(device), semantic_positions=i.semantic_positions.to(device),
                     pixel_positions=i.pixel_positions.to(device)) for i in self.images])


def collate(sequences: list[EncodedSequence], pad_token_id: int, ignore_index: int = -100,
            padding_side: str = "left") -> MultimodalBatch:
    """Pad sequences into one batch. Left padding (the default) puts every row's last token in
    the last column, which is where decoding reads logits."""
    if not sequences:
        raise ValueError("collate needs at least one sequence")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(len(s) for s in sequences)
    b = len(sequences)
    input_ids = torch.full((b, length), pad_token_id, dtype=torch.long)
    labels = torch.full((b, length), ignore_index, dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    position_ids = torch.zeros((b, length), dtype=torch.long)
    images = []
    for row, seq in enumerate(sequences):
        n = len(seq)
        start = length - n if padding_side == "left" else 0
        input_ids[row, start:start + n] = seq.input_ids
        labels[row, start:start + n] = seq.labels
        attention_mask[row, start:start + n] = 1
        position_ids[row, start:start + n] = torch.arange(n)
        images += [BatchImage(row, img.pixel_values, img.semantic_positions + start, img.pixel_positions + start)
                   for img in seq.images]
    return MultimodalBatch(input_ids, attention_mask, position_ids, labels, images)


# ---------------------------------------------------------------------- the processor
class IllumePlusProcessor:
    def __init__(self, tokenizer, config: IllumePlusConfig):
        """`tokenizer`: a Qwen2 text tokenizer already holding the image vocabulary (see
        `from_text_tokenizer` to extend a plain one)."""
        self.tokenizer = tokenizer
        self.config = config
        self.layout = TokenLayout.from_tokenizer(tokenizer, config.semantic_codebook_size, config.pixel_codebook_size)
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} entries but the model only {config.vocab_size} "
                             f"embedding rows (text_vocab_rows {config.text_vocab_rows} + image tokens)")

    @classmethod
    def from_text_tokenizer(cls, tokenizer, config: IllumePlusConfig) -> "IllumePlusProcessor":
        """Extend a plain Qwen2 text tokenizer (in place) with the image vocabulary."""
        extend_tokenizer(tokenizer, config.semantic_codebook_size, config.pixel_codebook_size)
        return cls(tokenizer, config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "IllumePlusProcessor":
        """config.json + the tokenizer files of a folder written by `IllumePlus.save_pretrained`."""
        from transformers import AutoTokenizer

        config = IllumePlusConfig.from_json(os.path.join(os.fspath(directory), "config.json"))
        return cls(AutoTokenizer.from_pretrained(os.fspath(directory)), config)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(os.fspath(directory))

    # ------------------------------------------------------------------ sizes and images
    def frame_spec(self, height: int, width: int) -> FrameSpec:
        return FrameSpec.for_size(height, width, self.config.tokenizer)

    def nearest_generation_size(self, height: int, width: int) -> tuple[int, int]:
        """The generation size nearest in aspect ratio w/h (ties: nearest to H x W), as theirs."""
        return nearest_anchor(height, width, self.config.generation_sizes)

    def prepare_understanding_image(self, image) -> torch.Tensor:
        """(3, H, W) in [-1, 1]: sides multiples of 16, area within the understanding bounds,
        aspect ratio kept (smart resize, PIL bicubic on uint8: DualViTok's own path)."""
        cfg = self.config
        return understanding_tensor(image, cfg.image_size_factor, cfg.understanding_min_pixels,
                                    cfg.understanding_max_pixels)

    def prepare_generation_image(self, image, size: tuple[int, int] | None = None,
                                 fit: str | None = None) -> tuple[torch.Tensor, ResizeInfo]:
        """Bring an (editing source) image to `size` (default: the nearest generation size) by
        `fit` (default `config.generation_fit`): "pad" (fit inside with LANCZOS, centre, fill
        with `config.pad_value`, white: their inference) or "crop" (cover, centre crop: their
        training data)."""
        rgb = as_rgb_image(image)  # EXIF orientation applied: the size is the upright one
        size = tuple(size) if size is not None else self.nearest_generation_size(rgb.height, rgb.width)
        return fit_to_anchor(rgb, size, fit or self.config.generation_fit, self.config.pad_value)

    def postprocess(self, images, info: ResizeInfo | None = None):
        """Generated image(s) (3, H, W) or (B, 3, H, W) in [-1, 1], or PIL images, -> PIL image(s).
        With `info` (from `prepare_generation_image`) the fit is undone: "pad" crops the padding
        away and resizes to the source's size; "crop" resizes to the source's pixel scale (the
        cropped border cannot come back). Outputs larger than the token size (the diffusion
        decoder's 2x) work too."""
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return [self.postprocess(image, info) for image in images]
        if isinstance(images, (list, tuple)):
            return [self.postprocess(image, info) for image in images]
        if info is None:
            return tensor_to_pil(images) if isinstance(images, torch.Tensor) else images
        return restore_source_size(images, info)

    # ------------------------------------------------------------------ chat
    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True,
                    assistant_prefix: str = "") -> EncodedSequence:
        """ChatML ids for `messages`, with labels on assistant replies (+ `<|im_end|>\\n`).
        `add_generation_prompt` ends with `<|im_start|>assistant\\n` + `assistant_prefix`."""
        if not messages:
            raise ValueError("messages is empty")
        if messages[0].get("role") != "system":
            messages = [{"role": "system", "content": self.config.system_prompt}, *messages]
        pieces: list[tuple[object, bool]] = []  # (text or image part, supervised)
        for message in messages:
            role, content = message.get("role"), message.get("content")
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"message role must be system, user or assistant, got {role!r}")
            parts = [content] if isinstance(content, str) else list(content or [])
            supervised = role == "assistant"
            pieces.append((f"{CHAT_START}{role}\n", False))
            pieces += [(part, supervised) for part in parts]
            pieces.append((f"{CHAT_END}\n", supervised))
        if add_generation_prompt:
            pieces.append((f"{CHAT_START}assistant\n{assistant_prefix}", False))
        return self._encode_pieces(pieces)

    def _encode_pieces(self, pieces: list[tuple[object, bool]]) -> EncodedSequence:
        ignore = self.config.ignore_index
        ids, labels, images = [], [], []
        text_run: list[tuple[str, bool]] = []

        def flush():
            # Tokenize a run of text at once (as the authors tokenize their prompt string);
            # a token is supervised when it starts inside a supervised piece.
            if not text_run:
                return
            text = "".join(t for t, _ in text_run)
            spans, at = [], 0
            for t, sup in text_run:
                if sup:
                    spans.append((at, at + len(t)))
                at += len(t)
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            for token, (start, _) in zip(enc["input_ids"], enc["offset_mapping"]):
                ids.append(token)
                labels.append(token if any(a <= start < b for a, b in spans) else ignore)
            text_run.clear()

        for part, supervised in pieces:
            if isinstance(part, str):
                text_run.append((part, supervised))
                continue
            flush()
            offset = len(ids)
            if isinstance(part, ImageCodes):
                spec = self.frame_spec(part.height, part.width)
                frame = frame_ids(self.layout, spec, part.semantic, part.pixel, resolution_tag=part.resolution_tag)
                ids += frame.ids.tolist()
                labels += frame.ids.tolist() if supervised else [ignore] * len(frame.ids)
            else:
                if supervised:
                    raise ValueError("an assistant turn can only hold images as ImageCodes (the model writes codes)")
                pixels = self.prepare_understanding_image(part)
                spec = self.frame_spec(*pixels.shape[-2:])
                frame = frame_ids(self.layout, spec)
                ids += frame.ids.tolist()
                labels += [ignore] * len(frame.ids)
                images.append(ImageSlots(pixels, frame.semantic_slots + offset, frame.pixel_slots + offset))
        flush()
        return EncodedSequence(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long), images)

    # ------------------------------------------------------------------ task prompts
    def _template_parts(self, template: str, image=None, **fields) -> list:
        """Fill a task template; its {image} becomes the image part."""
        before, sep, after = template.partition(IMAGE_PLACEHOLDER)
        if sep and image is None:
            raise ValueError("this prompt needs an image")
        parts = [before.format(**fields)]
        if sep:
            parts += [image, after.format(**fields)]
        return [p for p in parts if not isinstance(p, str) or p]

    def understanding_messages(self, image, question: str) -> list[dict]:
        return [{"role": "user", "content": self._template_parts(self.config.understanding_template, image,
                                                                 question=question)}]

    def encode_understanding(self, image, question: str) -> EncodedSequence:
        """`<image>\\n{question}`; the model answers in text (greedy by default)."""
        return self.encode_chat(self.understanding_messages(image, question))

    def text_to_image_messages(self, caption: str | None, size: tuple[int, int], training: bool = False) -> list[dict]:
        tag = self._resolution_tag(*size)
        if caption is None:
            text = self.config.unconditional_image_template.format(resolution_tag=tag)
        else:
            template = self.config.text_to_image_training_template if training else self.config.text_to_image_template
            text = template.format(resolution_tag=tag, caption=caption)
        return [{"role": "user", "content": text}]

    def encode_text_to_image(self, caption: str | None, size: tuple[int, int] = (512, 512),
                             codes: ImageCodes | None = None) -> EncodedSequence:
        """Text-to-image prompt (caption None: the unconditional one). Without `codes` it is the
        inference prompt: the resolution tag follows the assistant header, so `<start_of_image>`
        comes next. With `codes` it is a training sample whose supervised reply is the image
        (tag included) and which uses the training-data wording."""
        size = (int(size[0]), int(size[1]))
        messages = self.text_to_image_messages(caption, size, training=codes is not None)
        if codes is not None:
            _check_codes_size(codes, size)
            seq = self.encode_chat([*messages, {"role": "assistant", "content": [codes]}], add_generation_prompt=False)
        else:
            seq = self.encode_chat(messages, assistant_prefix=self._resolution_tag(*size))
        seq.target_size = size
        return seq

    def edit_messages(self, source: torch.Tensor, instruction: str | None) -> list[dict]:
        """`source` already at its generation size."""
        tag = self._resolution_tag(*source.shape[-2:])
        if instruction is None:
            parts = self._template_parts(self.config.unconditional_edit_template, source, resolution_tag=tag)
        else:
            parts = self._template_parts(self.config.edit_template, source, resolution_tag=tag,
                                         instruction=instruction)
        return [{"role": "user", "content": parts}]

    def encode_edit(self, image, instruction: str | None, size: tuple[int, int] | None = None,
                    codes: ImageCodes | None = None, fit: str | None = None) -> EncodedSequence:
        """Editing prompt (instruction None: the reconstruction prompt). The source is brought to
        `size` (default: nearest generation size) by `fit` (default: "crop" with `codes`, as their
        training data, else `config.generation_fit`); the output has that size. With `codes` the
        target image is the supervised reply (training)."""
        source, info = self.prepare_generation_image(image, size, fit or ("crop" if codes is not None else None))
        messages = self.edit_messages(source, instruction)
        out_size = info.size
        if codes is not None:
            _check_codes_size(codes, out_size)
            seq = self.encode_chat([*messages, {"role": "assistant", "content": [codes]}], add_generation_prompt=False)
        else:
            seq = self.encode_chat(messages, assistant_prefix=self._resolution_tag(*out_size))
        seq.target_size, seq.source_resize = out_size, info
        return seq

    def _resolution_tag(self, height: int, width: int) -> str:
        self.layout.height_tag(height), self.layout.width_tag(width)  # raise when no such tag exists
        return self.layout.resolution_tag_text(height, width)

    # ------------------------------------------------------------------ batching and text
    def collate(self, sequences: list[EncodedSequence], padding_side: str = "left") -> MultimodalBatch:
        return collate(sequences, self.layout.pad_token_id, self.config.ignore_index, padding_side)

    def decode_text(self, ids) -> str:
        """Text of generated ids, without image tokens or special tokens."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        ids = ids[~self.layout.is_image_token(ids)]
        return self.tokenizer.decode(ids.tolist(), skip_special_tokens=True)


def _check_codes_size(codes: ImageCodes, size: tuple[int, int]) -> None:
    if (codes.height, codes.width) != tuple(size):
        raise ValueError(f"codes are for a {codes.height}x{codes.width} image "
                         f"but the prompt asks for {size[0]}x{size[1]}")


__all__ = ["IllumePlusProcessor", "processor_in_folder", "ImageCodes", "ResizeInfo", "ImageSlots", "EncodedSequence", "BatchImage",
           "MultimodalBatch", "collate", "image_to_tensor", "tensor_to_pil"]


def processor_in_folder(directory: str | os.PathLike, config: IllumePlusConfig) -> IllumePlusProcessor | None:
    """The processor over the (already extended) text tokenizer saved in a checkpoint folder, ours
    or the authors'; None when the folder holds no tokenizer files."""
    directory = os.fspath(directory)
    if not any(os.path.isfile(os.path.join(directory, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    return IllumePlusProcessor(AutoTokenizer.from_pretrained(directory), config)

