"""From chat messages and images to model inputs, and from generated images back to pictures.

- Chat: Qwen ChatML. A message is {"role", "content"}; content is a string or a list of parts:
  text, an input image (PIL image or (3, H, W) tensor in [-1, 1]; read as continuous features)
  or `ImageCodes` (an image as DualViTok codes, e.g. generated in an earlier turn; read as code
  tokens). Labels supervise assistant replies with their `<|im_end|>` and newline.
- Task prompts (SPEC §3 Prompts), exactly as the authors' inference writes them.
- Images: understanding at any resolution up to 768² (sides multiples of 16); generation and
  editing at the nearest of the 11 generation sizes, by crop or pad, undone by `postprocess`.
- `collate`: left padding with per-row position ids (the model reads the last column).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..tokenizer.preprocess import smart_resize
from .config import IllumePlusConfig
from .frames import FrameSpec, frame_ids
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
class ResizeInfo:
    """How a source image was brought to its generation size, so that `postprocess` can undo it.
    `content_box` = (top, left, height, width) of the original picture inside the resized image
    (pad), or of the resized image's kept window (crop), in pixels of `size`."""

    original_size: tuple[int, int]
    size: tuple[int, int]
    fit: str
    content_box: tuple[float, float, float, float]
    scale: float  # resized pixels per original pixel


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


# ---------------------------------------------------------------------- image helpers
def image_to_tensor(image) -> torch.Tensor:
    """PIL image (any mode; read by `utils.images.load_image`), path, bytes or (3, H, W) tensor in
    [-1, 1] -> float32 (3, H, W) in [-1, 1]. Tensors must be finite and non-empty."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(f"image tensors must be float (3, H, W) in [-1, 1], "
                             f"got {image.dtype} {tuple(image.shape)}")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"image tensors must have positive height and width, got {tuple(image.shape)}")
        if not torch.isfinite(image).all():  # NaN passes any range comparison: check it first
            raise ValueError("image tensor holds NaN or infinite values")
        if image.min() < -1.001 or image.max() > 1.001:
            raise ValueError("image tensor values must lie in [-1, 1] (scale [0, 1] images with x * 2 - 1)")
        return image.float()
    from PIL import Image

    from ..utils.images import load_image

    if not isinstance(image, (Image.Image, str, os.PathLike, bytes)):
        raise ValueError(f"an image must be a PIL image, a path, bytes or a (3, H, W) tensor, "
                         f"got {type(image).__name__}")
    array = np.asarray(load_image(image), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def tensor_to_pil(image: torch.Tensor):
    from PIL import Image

    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic antialiased resize of (3, H, W) in [-1, 1], clamped back to [-1, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None].float(), size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    return out[0].clamp(-1, 1)


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
        """The generation size whose aspect ratio is closest (in log ratio) to H/W."""
        target = math.log(height / width)
        return min(self.config.generation_sizes, key=lambda s: abs(math.log(s[0] / s[1]) - target))

    def prepare_understanding_image(self, image) -> torch.Tensor:
        """(3, H, W) in [-1, 1]: sides multiples of 16, area within the understanding bounds,
        aspect ratio kept (smart resize)."""
        x = image_to_tensor(image)
        cfg = self.config
        size = smart_resize(*x.shape[-2:], factor=cfg.image_size_factor, min_pixels=cfg.understanding_min_pixels,
                            max_pixels=cfg.understanding_max_pixels)
        return resize(x, size)

    def prepare_generation_image(self, image, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, ResizeInfo]:
        """Bring an (editing source) image to `size` (default: the nearest generation size) by
        `config.generation_fit`: "crop" (cover, then centre crop) or "pad" (fit, then centre pad)."""
        x = image_to_tensor(image)
        h, w = x.shape[-2:]
        size = tuple(size) if size is not None else self.nearest_generation_size(h, w)
        big_h, big_w = size
        fit = self.config.generation_fit
        scale = max(big_h / h, big_w / w) if fit == "crop" else min(big_h / h, big_w / w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        if fit == "crop":
            rh, rw = max(rh, big_h), max(rw, big_w)
            top, left = (rh - big_h) // 2, (rw - big_w) // 2
            out = resize(x, (rh, rw))[:, top:top + big_h, left:left + big_w]
            box = (float(top), float(left), float(big_h), float(big_w))  # kept window of the resized image
        else:
            rh, rw = min(rh, big_h), min(rw, big_w)
            top, left = (big_h - rh) // 2, (big_w - rw) // 2
            out = torch.full((3, big_h, big_w), self.config.pad_value)
            out[:, top:top + rh, left:left + rw] = resize(x, (rh, rw))
            box = (float(top), float(left), float(rh), float(rw))  # the picture inside the padded image
        return out, ResizeInfo((int(h), int(w)), (big_h, big_w), fit, box, scale)

    def postprocess(self, images: torch.Tensor, info: ResizeInfo | None = None):
        """Generated image(s) (3, H, W) or (B, 3, H, W) in [-1, 1] -> PIL image(s). With `info`
        (from `prepare_generation_image`) the fit is undone: "pad" crops the padding away and
        resizes to the original size; "crop" resizes to the original pixel scale (the cropped
        border cannot come back). Outputs larger than the token size (the diffusion decoder's 2x)
        are handled by scaling the box."""
        if images.dim() == 4:
            return [self.postprocess(image, info) for image in images]
        if info is None:
            return tensor_to_pil(images)
        k = images.shape[-2] / info.size[0]  # output pixels per generation-size pixel
        if info.fit == "pad":
            top, left, hh, ww = (round(v * k) for v in info.content_box)
            restored = resize(images[:, top:top + hh, left:left + ww], info.original_size)
        else:
            h, w = images.shape[-2:]
            restored = resize(images, (max(1, round(h / (k * info.scale))), max(1, round(w / (k * info.scale)))))
        return tensor_to_pil(restored)

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
                    codes: ImageCodes | None = None) -> EncodedSequence:
        """Editing prompt (instruction None: the reconstruction prompt). The source is brought to
        `size` (default: nearest generation size); the output has that size. With `codes` the
        target image is the supervised reply (training)."""
        source, info = self.prepare_generation_image(image, size)
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

