"""Reconstruction quality of a DualViTok on a folder of images (paper Table 8 / SPEC section 5).

    illume-plus eval tokenizer --data DIR --model PATH --size 256 --json out.json
    illume-plus eval tokenizer --data DIR --config tiny --max-pixels 262144 --json out.json
    torchrun --nproc_per_node 8 -m illume_plus.evaluation.tokenizer --data DIR --model PATH ...

Each image is resized (`--size N`: short side to N then center crop N x N, the paper's 256²
protocol; `--max-pixels N`: any resolution, aspect kept, H, W multiples of 16, H*W <= N;
default: the model's own min/max pixels), tokenized, and decoded from its code indices alone.
Reported, over all images and all processes:
- psnr, ssim: per image on [0, 1] (data_range 1), averaged;
- semantic_codebook_usage, pixel_codebook_usage: fraction of each codebook used at least once
  (with the number of codes used and the perplexity of their frequencies);
- rfid: FID between originals and reconstructions, when `--inception-weights` is given;
- num_images (evaluated) and num_skipped (unreadable files).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import BucketBatchSampler, ImageFolderDataset, ImageTransform, JsonlImageDataset, collate_images
from ..tokenizer.config import DualViTokConfig
from ..tokenizer.model import DualViTok
from ..training.distributed import all_reduce_sum, cleanup_distributed, init_distributed
from ..utils.io import save_json
from .metrics import PSNR, SSIM, CodebookUsage, FrechetDistance

logger = logging.getLogger(__name__)

# Peak memory grows with the pixels in a batch: measured on CPU with the tiny preset (fp32),
# 1.85 GB for 4 x 256², 2.0 GB for 1 x 512², 6.0 GB for 16 x 256² or 4 x 512². One 512² image's
# worth of pixels per batch keeps an evaluation near 2 GB, which fits a laptop.
DEFAULT_BATCH_PIXELS = 512 * 512
MAX_DEFAULT_BATCH = 64


def default_batch_size(pixels_per_image: int, batch_pixels: int = DEFAULT_BATCH_PIXELS) -> int:
    """Images per batch so that a batch of the largest images holds about `batch_pixels` pixels."""
    return max(1, min(MAX_DEFAULT_BATCH, batch_pixels // max(1, pixels_per_image)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="illume-plus eval tokenizer",
                                     description="PSNR / SSIM / rFID / codebook usage of a DualViTok")
    parser.add_argument("--data", required=True, help="image folder (recursive) or a .jsonl list of {\"image\": path}")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="DualViTok directory (save_pretrained format)")
    source.add_argument("--config", help="preset name (e.g. tiny): a randomly initialised tokenizer")
    parser.add_argument("--quantizer", choices=("simvq", "vq"), default=None, help="with --config: quantizer kind")
    parser.add_argument("--seed", type=int, default=0, help="with --config: initialisation seed")
    resize = parser.add_mutually_exclusive_group()
    resize.add_argument("--size", type=int, help="resize short side then center-crop to N x N")
    resize.add_argument("--max-pixels", type=int, help="any resolution, H*W <= N (aspect kept)")
    parser.add_argument("--min-pixels", type=int, default=None, help="with any resolution: H*W >= N")
    parser.add_argument("--inception-weights", help="FID Inception file (pt_inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--json", required=True, help="where to write the metrics")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: as many as fit --batch-pixels)")
    parser.add_argument("--batch-pixels", type=int, default=DEFAULT_BATCH_PIXELS,
                        help="with the default batch size: pixels per batch (peak memory grows with it, "
                             "about 5.5 GB per million pixels on CPU; default 512*512, about 2 GB)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def load_tokenizer(args) -> DualViTok:
    if args.model:
        return DualViTok.from_pretrained(args.model)
    torch.manual_seed(args.seed)
    overrides = {"quantizer": args.quantizer} if args.quantizer else {}
    return DualViTok(DualViTokConfig.from_name(args.config, **overrides))


def build_eval_dataset(data: str, transform: ImageTransform):
    path = Path(data)
    if path.is_file() and path.suffix == ".jsonl":
        return JsonlImageDataset(path, transform)
    return ImageFolderDataset(path, transform)


@torch.no_grad()
def evaluate(tokenizer: DualViTok, loader, device, inception=None) -> dict:
    """Metrics over every batch of `loader` (summed over processes under torch.distributed)."""
    tokenizer.eval()
    psnr, ssim = PSNR().to(device), SSIM().to(device)
    semantic_usage = CodebookUsage(tokenizer.config.semantic_codebook_size).to(device)
    pixel_usage = CodebookUsage(tokenizer.config.pixel_codebook_size).to(device)
    fid = FrechetDistance().to(device) if inception is not None else None
    num_images, num_skipped = 0, 0
    for batch in loader:
        num_skipped += batch["num_skipped"]
        if batch["images"] is None:
            continue
        images = batch["images"].to(device)
        encoding = tokenizer.encode(images)
        # Decode from the indices alone: exactly what a consumer of the tokens gets back.
        reconstruction = tokenizer.decode(encoding.semantic_ids, encoding.pixel_ids)
        real = ((images.float() + 1) / 2).clamp(0, 1)
        fake = ((reconstruction.float() + 1) / 2).clamp(0, 1)
        psnr.update(fake, real)
        ssim.update(fake, real)
        semantic_usage.update(encoding.semantic_ids)
        pixel_usage.update(encoding.pixel_ids)
        if fid is not None:
            fid.update(inception(real).features, real=True)
            fid.update(inception(fake).features, real=False)
        num_images += images.shape[0]
    counts = all_reduce_sum(torch.tensor([num_images, num_skipped], dtype=torch.long, device=device)).tolist()
    if counts[0] == 0:
        raise RuntimeError("no readable images to evaluate")
    semantic, pixel = semantic_usage.compute(), pixel_usage.compute()
    results = {
        "num_images": counts[0],
        "num_skipped": counts[1],
        "psnr": psnr.compute().item(),
        "ssim": ssim.compute().item(),
        "semantic_codebook_usage": semantic["usage"].item(),
        "pixel_codebook_usage": pixel["usage"].item(),
        "semantic_codes_used": int(semantic["used_codes"]),
        "pixel_codes_used": int(pixel["used_codes"]),
        "semantic_codebook_perplexity": semantic["perplexity"].item(),
        "pixel_codebook_perplexity": pixel["perplexity"].item(),
        "semantic_codebook_size": tokenizer.config.semantic_codebook_size,
        "pixel_codebook_size": tokenizer.config.pixel_codebook_size,
    }
    if fid is not None:
        results["rfid"] = fid.compute().item()
    return results


def format_table(results: dict) -> str:
    rows = [("images", f"{results['num_images']} ({results['num_skipped']} unreadable skipped)"),
            ("PSNR (dB)", f"{results['psnr']:.3f}"), ("SSIM", f"{results['ssim']:.4f}")]
    if "rfid" in results:
        rows.append(("rFID", f"{results['rfid']:.3f}"))
    for branch in ("semantic", "pixel"):
        rows.append((f"{branch} codebook usage",
                     f"{100 * results[f'{branch}_codebook_usage']:.2f}% "
                     f"({results[f'{branch}_codes_used']}/{results[f'{branch}_codebook_size']}, "
                     f"perplexity {results[f'{branch}_codebook_perplexity']:.1f})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.batch_size is not None and args.batch_size < 1:
        raise SystemExit("--batch-size must be >= 1")
    if args.batch_pixels < 1:
        raise SystemExit("--batch-pixels must be >= 1")
    ctx = init_distributed(args.device)
    tokenizer = load_tokenizer(args).to(ctx.device)
    cfg = tokenizer.config
    if args.size is not None:
        transform = ImageTransform(mode="fixed", size=args.size, factor=cfg.pixel_downsample)
    else:
        transform = ImageTransform(mode="anyres", factor=cfg.pixel_downsample,
                                   min_pixels=args.min_pixels or cfg.min_pixels,
                                   max_pixels=args.max_pixels or cfg.max_pixels)
    if args.batch_size is None:  # the largest image this resize policy can produce sets the batch
        largest = transform.size ** 2 if transform.mode == "fixed" else transform.max_pixels
        args.batch_size = default_batch_size(largest, args.batch_pixels)
        logger.info("batch size %d (%d pixels per batch at most; --batch-size to choose)", args.batch_size,
                    args.batch_size * largest)
    dataset = build_eval_dataset(args.data, transform)
    sizes = dataset.sample_sizes()
    if args.limit is not None:
        sizes = sizes[:args.limit]
    sampler = BucketBatchSampler(sizes, args.batch_size, shuffle=False, num_replicas=ctx.world_size, rank=ctx.rank)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_images, num_workers=args.num_workers)
    inception = None
    if args.inception_weights:
        from .inception import InceptionV3

        inception = InceptionV3.from_pretrained(args.inception_weights).to(ctx.device)

    start = time.perf_counter()
    results = evaluate(tokenizer, loader, ctx.device, inception)
    results["num_skipped"] += sum(size is None for size in sizes)  # unreadable headers
    results["seconds"] = round(time.perf_counter() - start, 2)
    results["model"] = args.model or f"random {args.config} (seed {args.seed})"
    results["resize"] = f"fixed {args.size}" if args.size else f"anyres {transform.min_pixels}..{transform.max_pixels} px"
    if ctx.is_main:
        save_json(results, args.json)
        print(format_table(results))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
