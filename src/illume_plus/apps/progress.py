"""Progress bars for the commands: image decoding steps with tokens/s (stderr, tqdm)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def image_progress(pipe, label: str, enabled: bool = True):
    """While inside, every decoding step of an image request advances a bar on stderr
    ("label: 37%|####      | 120/324 [00:03, 41.2 tok/s]")."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = None

    def on_step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="tok", leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)

    previous, pipe.on_image_step = pipe.on_image_step, on_step
    try:
        yield
    finally:
        pipe.on_image_step = previous
        if bar is not None:
            bar.close()
