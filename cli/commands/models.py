"""`assetrag check-model`: the onnx image encoder (fp32, int8) compared with torch fp32 for a
CLIP model, here on the CPU, before a worker is switched to it; `assetrag fetch-model`: a
published model's weights downloaded once into the cache folder (a pod's init container).

The encoder is imported only when the command runs: torch stays out of the other commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.context import EXIT_JOB_FAILED, CliContext, cli_of
from cli.paths import IMAGE_EXTENSIONS

commands = typer.Typer()


@commands.command("fetch-model")
def fetch_model(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(
            help="A CLIP model name. [default: ASSETRAG_CLIP_MODEL]", show_default=False
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="The folder clip.load reads. [default: ~/.cache/clip]", show_default=False
        ),
    ] = None,
) -> None:
    """Download a published CLIP model's weights into the cache folder, once: a no-op when
    they are there (SHA-256 checked), and nothing to do for a checkpoint file path."""
    from shared.clip.weights import fetch_weights
    from shared.settings import get_settings

    cli = cli_of(ctx)
    spec = model or get_settings().clip_model
    try:
        path = fetch_weights(spec, cache)
    except (OSError, RuntimeError) as exc:  # clip raises RuntimeError on a checksum mismatch
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
            help="A CLIP model name or checkpoint file. [default: ASSETRAG_CLIP_MODEL]",
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
    """Compare the onnx image encoder (fp32, int8) with torch fp32: cosine parity and speed.

    Runs here, on the CPU, exporting into the data dir's cache as a worker would; exits 1
    when a runtime falls below ASSETRAG_ONNX_MIN_COSINE (a worker would refuse to serve it).
    """
    from shared.clip.encoder import ClipEncoder
    from shared.settings import get_settings

    cli = cli_of(ctx)
    settings = get_settings()
    spec = model or settings.clip_model
    encoder = ClipEncoder(spec, "cpu", "fp32", cache_dir=settings.data_dir / "onnx")
    try:
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
