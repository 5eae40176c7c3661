"""One conversation mixing understanding, generation and editing (the web demo's logic, no gradio).

    convo = Conversation(pipe)
    convo.respond("What is in this picture?", upload="photo.png")   # -> [Reply(text=...)]
    convo.respond("draw an image of a red circle")                   # -> [Reply(image=PIL)]
    convo.respond("make it blue")                                    # edits the image just made

The "current image" is the one last uploaded or made; edits and questions refer to it.
Each turn is a single task call on the pipeline (the history is shown, not fed back), so
the context never outgrows the model. Bad input (an unreadable or oversized upload, an empty
message) becomes a reply that says what is wrong; nothing raises into the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .intent import ANSWER, EDIT, GENERATE, classify
from .options import open_image

MAX_UPLOAD_SIDE = 1024  # uploads are downscaled to this at once (a 9000x9000 photo never stays in memory)


@dataclass
class Settings:
    """The demo's controls. size: (H, W) or None for the model's default; sampling: Pipeline kwargs."""

    size: tuple[int, int] | None = None
    guidance_scale: float | None = None
    seed: int = 0
    diffusion: bool = False
    max_new_tokens: int = 128
    sampling: dict = field(default_factory=dict)


@dataclass
class Reply:
    text: str | None = None
    image: object = None  # PIL image
    task: str = ANSWER
    error: bool = False


class Conversation:
    def __init__(self, pipe):
        self.pipe = pipe
        self.current = None  # the image under discussion: a PIL upload or an ImageResult

    def respond(self, message: str, upload=None, settings: Settings | None = None) -> list[Reply]:
        settings = settings or Settings()
        if upload is not None:
            try:
                self.current = open_image(upload, max_side=MAX_UPLOAD_SIDE)
            except (ValueError, OSError) as e:  # one line that names the problem
                return [Reply(text=f"Could not use the upload: {e}", error=True, task="upload")]
        if not (message or "").strip():
            if upload is not None:
                return [Reply(text="Got the image. Ask about it, or tell me how to edit it.")]
            return [Reply(text="Type a message: a question, 'draw an image of ...', or an edit like 'make it blue'.",
                          error=True)]
        try:
            intent = classify(message, has_image=self.current is not None)
        except ValueError as e:
            return [Reply(text=str(e), error=True)]
        try:
            return [self._run(intent, settings)]
        except ValueError as e:  # bad settings or an input the model cannot take
            return [Reply(text=f"Cannot do that: {' '.join(str(e).split())}", error=True, task=intent.task)]

    def _run(self, intent, settings: Settings) -> Reply:
        pipe = self.pipe
        size, any_size = settings.size, False
        if size is not None:
            default, outside = pipe.default_size()
            any_size = outside and tuple(size) == tuple(default)
        use_diffusion = settings.diffusion and callable(pipe.decoder)
        if intent.task == GENERATE:
            with _decoder(pipe, use_diffusion):
                result = pipe.generate(intent.text, size=size, any_size=any_size, guidance_scale=settings.guidance_scale,
                                       seed=settings.seed, **settings.sampling)
            self.current = result
            return Reply(image=result.image, task=GENERATE, text=intent.text)
        if intent.task == EDIT:
            with _decoder(pipe, use_diffusion):
                result = pipe.edit(self._source(), intent.text, guidance_scale=settings.guidance_scale,
                                   seed=settings.seed, size=size, any_size=any_size,
                                   **_image_sampling(settings.sampling))
            self.current = result
            return Reply(image=result.image, task=EDIT, text=intent.text)
        if self.current is None:
            answer = pipe.chat().send(intent.text, max_new_tokens=settings.max_new_tokens, seed=settings.seed,
                                      **_text_sampling(settings.sampling))
        else:
            answer = pipe.understand(self._source(), intent.text, max_new_tokens=settings.max_new_tokens,
                                     seed=settings.seed, **_text_sampling(settings.sampling))
        return Reply(text=answer.strip() or "(the model gave an empty answer)", task=ANSWER)

    def _source(self):
        """The current image as the model reads it: a made image as its pixels (a PIL image)."""
        current = self.current
        return current.image if hasattr(current, "image") and current.image is not None else current


def _image_sampling(sampling: dict) -> dict:
    return {k: v for k, v in sampling.items() if not k.startswith("text_")}


def _text_sampling(sampling: dict) -> dict:
    return {k: v for k, v in sampling.items() if k.startswith("text_")}


class _decoder:
    """Use the diffusion decoder for one call when asked, else the pixel decoder."""

    def __init__(self, pipe, diffusion: bool):
        self.pipe, self.diffusion = pipe, diffusion

    def __enter__(self):
        self.saved = self.pipe.decoder
        if not self.diffusion and callable(self.saved):
            self.pipe.decoder = "pixel"

    def __exit__(self, *exc):
        self.pipe.decoder = self.saved
