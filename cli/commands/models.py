"""`assetrag check-model`: any offered model (either family, through shared/clip/families.py)
loaded and run once, and its onnx image encoder (fp32, int8) compared with torch fp32, here on
the CPU, before a worker is switched to it; `assetrag fetch-model`: published weights
downloaded once into the cache folder or the model folder (a pod's init container).

The encoder is imported only when the command runs: torch stays out of the other commands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import EXIT_JOB_FAILED, CliContext, cli_of
from cli.paths import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from shared.clip.families import Encoder

commands = typer.Typer()


@commands.command("fetch-model")
def fetch_model(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(
            help="A CLIP or open_clip:<arch>/<tag> model name. [default: ASSETRAG_CLIP_MODEL]",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Fetch ASSETRAG_CLIP_MODEL and every model in ASSETRAG_CLIP_MODELS."
        ),
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="The folder clip.load reads. [default: ~/.cache/clip]", show_default=False
        ),
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option(
            help="The folder open_clip models go to, one <arch>/<tag>/ each. "
            "[default: ASSETRAG_MODEL_DIR]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download a published model's weights once: OpenAI CLIP's into the cache folder (a
    no-op when there, SHA-256 checked; nothing to do for a checkpoint file path), an
    open_clip model's into ASSETRAG_MODEL_DIR/<arch>/<tag>/ (a no-op when that folder is
    there). Each lands whole or not at all, so pods starting together never read half."""
    from shared.settings import get_settings

    cli = cli_of(ctx)
    settings = get_settings()
    if every and model:
        cli.fail("error usage: give a model or --all, not both")
    names = (
        [settings.clip_model, *settings.clip_models] if every else [model or settings.clip_model]
    )
    for spec in dict.fromkeys(names):
        _fetch_one(cli, spec, cache, to or settings.model_dir)


def _fetch_one(cli: CliContext, spec: str, cache: Path | None, model_dir: Path | None) -> None:
    from shared.clip.catalog import is_open_clip
    from shared.clip.weights import fetch_open_clip, fetch_weights

    try:
        if is_open_clip(spec):
            if model_dir is None:
                cli.fail(f"error: {spec!r} needs a model folder: ASSETRAG_MODEL_DIR or --to")
            folder, fetched = fetch_open_clip(spec, model_dir)
            state = "downloaded" if fetched else "already there"
            cli.console.print(f"{escape(spec)}: {escape(str(folder))} ({state})")
            return
        path = fetch_weights(spec, cache)
    except (OSError, RuntimeError, ValueError) as exc:  # clip: RuntimeError on a bad checksum
        cli.fail(f"error: cannot fetch {spec!r}: {exc}")
    if path is None:
        if not Path(spec).is_file():
            cli.fail(f"error: {spec!r} is neither a published CLIP model nor a checkpoint file")
        cli.console.print(f"{escape(spec)}: a checkpoint file, nothing to fetch")
        return
    cli.console.print(f"{escape(spec)}: {escape(str(path))}")


@commands.command("check-model")
def check_model(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(
            help="A CLIP model name, checkpoint file or open_clip:<arch>/<tag>. "
            "[default: ASSETRAG_CLIP_MODEL]",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="A folder of your own images to compare on. [default: built-in probe images]",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many images.")] = 32,
) -> None:
    """Load a model (either family), encode an image and a text, and compare the onnx image
    encoder (fp32, int8) with torch fp32: dimension, cosine parity and speed.

    Runs here, on the CPU, exporting into the data dir's cache as a worker would; exits 1
    when a runtime falls below ASSETRAG_ONNX_MIN_COSINE (a worker would refuse to serve it).
    """
    from shared.clip.families import encoder_for
    from shared.settings import get_settings

    cli = cli_of(ctx)
    settings = get_settings()
    spec = model or settings.clip_model
    # the family chooser the workers use, on the reference the onnx runtimes are held to
    reference = settings.model_copy(
        update={"device": "cpu", "precision": "fp32", "backend": "torch"}
    )
    try:
        encoder = encoder_for(spec, reference)
        cli.console.print(_first_pass(spec, encoder))
        pictures = (
            _folder_images(cli, images, limit, encoder.input_resolution, settings.max_image_pixels)
            if images
            else None
        )
        checks = encoder.check_onnx(pictures)
    except (ValueError, OSError) as exc:
        cli.fail(f"error: {exc}")
    bound = settings.onnx_min_cosine
    cli.console.print(
        f"{escape(spec)}: image tower on {len(pictures or [])} images"
        if pictures
        else f"{escape(spec)}: image tower on the probe images"
    )
    cli.console.print(_checks_table(checks, bound))
    refused = [c for c in checks if c.parity is not None and c.parity.min_cosine < bound]
    for check in refused:
        assert check.parity is not None
        cli.err.print(
            f"{check.runtime}: min cosine {check.parity.min_cosine:.6f} is below the bound "
            f"{bound} (ASSETRAG_ONNX_MIN_COSINE): a worker would refuse to serve it"
        )
    if refused:
        raise typer.Exit(EXIT_JOB_FAILED)


def _first_pass(spec: str, encoder: Encoder) -> str:
    """The model loaded, one image and one text encoded: its dimension and what each took."""
    from shared.clip.onnx_runtime import probe_images

    started = time.perf_counter()
    encoder.load()
    loaded = time.perf_counter()
    image = encoder.encode_images([encoder.preprocess(probe_images(1, seed=1)[0])])
    imaged = time.perf_counter()
    text = encoder.encode_texts(["a red silk shawl with gold trim"])
    texted = time.perf_counter()
    if image.shape != text.shape or image.shape[-1] != encoder.dim:
        raise ValueError(f"image {image.shape} and text {text.shape} features differ in shape")
    return (
        f"{escape(spec)}: dimension {encoder.dim}, loaded in {loaded - started:.1f} s\n"
        f"one image {(imaged - loaded) * 1000:.0f} ms, one text {(texted - imaged) * 1000:.0f} ms"
    )


def _checks_table(checks: list[Any], bound: float) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("runtime", "min cos", "mean cos", "img/s", "x torch", "serves"):
        table.add_column(column)
    base = checks[0].images_per_s
    for check in checks:
        found = check.parity
        if found is None:
            cosines, serves = ("1", "1"), "reference"
        else:
            cosines = (f"{found.min_cosine:.6f}", f"{found.mean_cosine:.6f}")
            serves = "yes" if found.min_cosine >= bound else "no"
        speed = f"{check.images_per_s:.1f}"
        table.add_row(check.runtime, *cosines, speed, f"{check.images_per_s / base:.2f}", serves)
    return table


def _folder_images(
    cli: CliContext, folder: Path, limit: int, resolution: int, max_pixels: int
) -> list[Any]:
    from shared.images import sniff_and_decode

    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        try:
            found.append(sniff_and_decode(path.read_bytes(), max_pixels, resolution)[1])
        except Exception as exc:  # a bad file is skipped, and said so
            cli.err.print(f"skipped {escape(str(path))}: {exc}")
        if len(found) >= limit:
            break
    if not found:
        cli.fail(f"error: no readable images in {folder}")
    return found
