"""`illume-plus app`: a Gradio demo with the three tasks (needs `pip install illume-plus[demo]`)."""

from __future__ import annotations

import argparse

from ..utils.images import load_image
from .loading import add_model_arguments, build_pipeline

GENERATION_SIZES = ["512x512", "384x512", "512x384", "384x768", "768x384", "384x576", "576x384",
                    "320x960", "960x320", "256x1024", "1024x256"]


def build_app(pipe):
    try:
        import gradio as gr
    except ImportError as e:  # optional dependency
        raise SystemExit("the web demo needs gradio: pip install -c constraints.txt -e '.[demo]'") from e

    def generate(prompt, size, guidance, seed):
        if not prompt.strip():
            raise gr.Error("the prompt is empty")
        h, w = (int(v) for v in size.split("x"))
        return pipe.generate([prompt], size=(h, w), guidance_scale=guidance, seed=int(seed))[0].image

    def edit(image, instruction, guidance, seed):
        if image is None or not instruction.strip():
            raise gr.Error("an image and an instruction are both needed")
        return pipe.edit(load_image(image), instruction, guidance_scale=guidance, seed=int(seed)).image

    def understand(image, question):
        if image is None or not question.strip():
            raise gr.Error("an image and a question are both needed")
        return pipe.understand(load_image(image), question)

    with gr.Blocks(title="ILLUME+") as app:
        gr.Markdown("# ILLUME+ — understand, generate and edit images with one model")
        with gr.Tab("Generate"):
            prompt = gr.Textbox(label="Prompt")
            with gr.Row():
                size = gr.Dropdown(GENERATION_SIZES, value="512x512", label="Size (HxW)")
                guidance = gr.Slider(1.0, 5.0, value=2.0, step=0.25, label="Guidance")
                seed = gr.Number(0, label="Seed", precision=0)
            out = gr.Image(label="Image")
            gr.Button("Generate").click(generate, [prompt, size, guidance, seed], out)
        with gr.Tab("Edit"):
            src = gr.Image(type="pil", label="Source image")
            instruction = gr.Textbox(label="Instruction")
            with gr.Row():
                eguid = gr.Slider(1.0, 3.0, value=1.5, step=0.05, label="Guidance")
                eseed = gr.Number(0, label="Seed", precision=0)
            eout = gr.Image(label="Edited")
            gr.Button("Edit").click(edit, [src, instruction, eguid, eseed], eout)
        with gr.Tab("Understand"):
            qimg = gr.Image(type="pil", label="Image")
            question = gr.Textbox(label="Question")
            answer = gr.Textbox(label="Answer")
            gr.Button("Ask").click(understand, [qimg, question], answer)
    return app


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="illume-plus app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    add_model_arguments(p)
    args = p.parse_args(argv)
    build_app(build_pipeline(args)).launch(server_name=args.host, server_port=args.port)
    return 0
