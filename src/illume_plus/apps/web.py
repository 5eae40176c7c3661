"""`illume-plus demo`: the web demo, ONE conversation that understands, generates and edits.

Upload an image and ask about it; ask for an image ("draw an image of a red circle"); then
"make it blue" edits the image just made. Controls: size (the 11 generation sizes and the
model's own), guidance, per-phase sampling, seed, the diffusion decoder when the model has one.
Bound to 127.0.0.1; requests queue behind a concurrency limit, so many users at once wait
their turn instead of crashing it. Needs the `demo` extra (gradio); the rest of the package
never imports this module.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import tempfile
from pathlib import Path

from .conversation import Conversation, Reply, Settings
from .options import GENERATION_SIZE_TEXT, ArgumentParser, add_model_options, check_model_paths, load_pipeline_from_args

logger = logging.getLogger(__name__)
DEFAULT_SIZE_LABEL = "model default"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    try:
        import gradio as gr
    except ImportError:
        raise SystemExit("illume-plus demo: error: the web demo needs gradio: "
                         "pip install -c constraints.txt -e '.[demo]'") from None
    return gr


def size_choices(pipe) -> list[str]:
    default, _ = pipe.default_size()
    sizes = [f"{h}x{w}" for h, w in pipe.config.generation_sizes]
    own = f"{default[0]}x{default[1]}"
    return [f"{DEFAULT_SIZE_LABEL} ({own})"] + [s for s in sizes if s != own] + ([own] if own in sizes else [])


def _parse_size_choice(choice: str):
    if not choice or choice.startswith(DEFAULT_SIZE_LABEL):
        return None
    h, w = (int(v) for v in choice.split("x"))
    return h, w


def _sampling(temperature, semantic_top_k, pixel_top_k, top_p) -> dict:
    out = {}
    if temperature:
        out["temperature"] = float(temperature)
    if semantic_top_k:
        out["semantic_top_k"] = int(semantic_top_k)
    if pixel_top_k:
        out["pixel_top_k"] = int(pixel_top_k)
    if top_p:
        out["top_p"] = float(top_p)
    return out


def build_app(pipe, concurrency_limit: int = 1, max_queue: int = 64):
    """The gradio Blocks app over `pipe` (queued: `concurrency_limit` requests run at once)."""
    gr = _import_gradio()
    image_dir = Path(tempfile.mkdtemp(prefix="illume-plus-demo-"))
    card = getattr(pipe, "card", None)
    notice = ""
    if card is not None and not card.trained:
        notice = "**Note:** this model is an untrained stand-in (random weights): its images are noise."
    elif card is not None and card.description:
        notice = f"**Model:** {card.description}"
    has_diffusion = callable(getattr(pipe, "decoder", None))
    counter = itertools.count()

    def respond(message, history, convo, size, guidance, seed, temperature, semantic_top_k, pixel_top_k, top_p,
                max_new_tokens, diffusion):
        convo = convo or Conversation(pipe)
        message = message or {}
        text = message.get("text", "") if isinstance(message, dict) else str(message)
        files = message.get("files", []) if isinstance(message, dict) else []
        upload = _file_path(files[-1]) if files else None
        settings = Settings(size=_parse_size_choice(size), guidance_scale=float(guidance) if guidance else None,
                            seed=int(seed or 0), diffusion=bool(diffusion),
                            max_new_tokens=int(max_new_tokens or 128),
                            sampling=_sampling(temperature, semantic_top_k, pixel_top_k, top_p))
        try:
            replies = convo.respond(text, upload=upload, settings=settings)
        except Exception as e:  # a bug: its traceback goes to the server log, one line to the page
            logger.exception("the demo failed on a request")
            replies = [Reply(text=f"Internal error ({type(e).__name__}): {' '.join(str(e).split())[:300]}",
                             error=True)]
        history = list(history or [])
        if upload is not None:  # an unreadable upload is shown by name, never as a broken picture
            upload_failed = bool(replies) and replies[0].error and replies[0].task == "upload"
            history.append({"role": "user", "content": f"📎 {Path(upload).name}" if upload_failed
                            else {"path": upload}})
        if text.strip():
            history.append({"role": "user", "content": text})
        for reply in replies:
            if reply.image is not None:
                path = image_dir / f"{reply.task}-{next(counter):05d}.png"
                reply.image.save(path)
                history.append({"role": "assistant", "content": {"path": str(path)}})
            elif reply.text:
                shown = reply.text.replace(upload, Path(upload).name) if upload else reply.text
                history.append({"role": "assistant", "content": ("⚠️ " if reply.error else "") + shown})
        return history, None, convo

    with gr.Blocks(title="ILLUME+") as app:
        gr.Markdown("# ILLUME+ · understand, generate and edit images in one conversation\n"
                    "Upload an image and ask about it · *draw an image of a red circle* · then *make it blue*."
                    + (f"\n\n{notice}" if notice else ""))
        chatbot = gr.Chatbot(label="Conversation", height="62vh", elem_id="conversation")
        box = gr.MultimodalTextbox(placeholder="Ask, request an image, or describe an edit; attach an image with +",
                                   file_types=["image"], file_count="single", elem_id="message", show_label=False)
        convo = gr.State(None)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                choices = size_choices(pipe)
                size = gr.Dropdown(choices, value=choices[0], label=f"Size (HxW; the 11: {GENERATION_SIZE_TEXT})")
                guidance = gr.Number(None, label="Guidance (CFG; empty: the model's default)", minimum=1.0,
                                     maximum=10.0, step=0.25)
                seed = gr.Number(0, label="Seed", precision=0)
            with gr.Row():
                temperature = gr.Number(None, label="Temperature (all phases; empty: default)")
                semantic_top_k = gr.Number(None, label="Semantic top-k", precision=0)
                pixel_top_k = gr.Number(None, label="Pixel top-k", precision=0)
                top_p = gr.Number(None, label="Top-p")
                max_new_tokens = gr.Number(128, label="Max answer tokens", precision=0, minimum=1)
                diffusion = gr.Checkbox(False, label="Diffusion decoder (2x)", interactive=has_diffusion,
                                        info=None if has_diffusion else "this model has none")
        inputs = [box, chatbot, convo, size, guidance, seed, temperature, semantic_top_k, pixel_top_k, top_p,
                  max_new_tokens, diffusion]
        box.submit(respond, inputs, [chatbot, box, convo], api_name="respond")
        gr.Button("Clear conversation").click(lambda: ([], None, None), None, [chatbot, box, convo], api_name=False)
    app.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    return app


def _file_path(item) -> str | None:
    if isinstance(item, dict):
        return item.get("path")
    return getattr(item, "path", None) or (str(item) if item else None)


def launch(pipe, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kwargs):
    app = build_app(pipe, **kwargs)
    app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
               max_file_size=MAX_UPLOAD_BYTES, footer_links=["api"])
    return app


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="illume-plus demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (this machine only); 0.0.0.0 exposes it")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=1, help="requests run at once (the rest queue)")
    add_model_options(p)
    args = p.parse_args(argv)
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    _import_gradio()  # fail before loading the model
    check_model_paths(args)
    pipe = load_pipeline_from_args(args)
    print(f"illume-plus demo: http://{args.host}:{args.port}  (Ctrl+C to stop)", file=sys.stderr)
    launch(pipe, args.host, args.port, concurrency_limit=args.concurrency)
    return 0
