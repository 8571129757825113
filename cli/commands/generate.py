"""`assetrag generate`: images made from a prompt and references from a collection (or many
prompts from a JSON Lines file, interactively or through Gemini's Batch API), saved here."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli.client import AssetragClient
from cli.context import EXIT_JOB_FAILED, CliContext, cli_of, validated
from cli.follow import SUBMIT_WAIT_S, finish
from cli.sources import SourceOptions
from shared.contract import (
    MAX_REFERENCES,
    BrandScore,
    GeneratedImage,
    GenerateRequest,
    GenerateResult,
    Job,
    JobKind,
    JobState,
    Usage,
    UsedSource,
)

commands = typer.Typer()

_MIME_SUFFIX = {
    "image/png": {".png"},
    "image/jpeg": {".jpg", ".jpeg"},
    "image/webp": {".webp"},
    "image/gif": {".gif"},
}


def _output_paths(job_id: str, images: list[GeneratedImage], output: Path | None) -> list[Path]:
    """Where each image goes: `output` itself (numbered when there are several), or, when it
    is a folder (it exists, or has no suffix: `-o out/`), files named by job, number and ratio
    inside it."""
    if output is not None and (output.is_dir() or not output.suffix):
        return [
            output / f"generated-{job_id[:8]}-{n}{_ratio_suffix(image)}.png"
            for n, image in enumerate(images, start=1)
        ]
    out = output or Path(f"generated-{job_id[:8]}.png")
    if len(images) <= 1:
        return [out]
    return [
        out.with_name(f"{out.stem}-{n}{_ratio_suffix(image)}{out.suffix}")
        for n, image in enumerate(images, start=1)
    ]


def _ratio_suffix(image: GeneratedImage) -> str:
    return f"-{image.aspect_ratio.replace(':', 'x')}" if image.aspect_ratio else ""


def _save_image(data: bytes, mime_type: str, path: Path) -> None:
    """Write the bytes, re-encoding when the file's suffix asks for another format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if not suffix or suffix in _MIME_SUFFIX.get(mime_type, {suffix}):
        path.write_bytes(data)
        return
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        img: Image.Image = opened
        if suffix in (".jpg", ".jpeg") and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(path)


def read_items(cli: CliContext, path: Path) -> list[dict[str, Any]]:
    """A prompts file: JSON Lines, each line an item object (`prompt`, `references`, `count`,
    `aspect_ratio`, `image_size`, `metadata`) or a bare JSON string (a prompt); blank lines and
    lines starting with # are skipped."""
    items: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            cli.fail(f"error usage: {path}:{number} is not JSON ({exc.msg})")
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            cli.fail(f"error usage: {path}:{number} must be an object or a string")
        items.append(value)
    if not items:
        cli.fail(f"error usage: {path} holds no items")
    return items


@commands.command()
def generate(
    ctx: typer.Context,
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Collection the references come from.")
    ],
    prompt: Annotated[str | None, typer.Argument(help="What to make.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            exists=True,
            dir_okay=False,
            help="Many prompts: a JSON Lines file, one item (or prompt string) per line.",
        ),
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="Through Gemini's Batch API: half the price, within 24 hours."
        ),
    ] = False,
    ref: Annotated[
        list[str] | None,
        typer.Option("--ref", help=f"Reference asset id (repeatable, up to {MAX_REFERENCES})."),
    ] = None,
    subject: Annotated[
        list[Path] | None,
        typer.Option(
            "--subject",
            exists=True,
            dir_okay=False,
            help="A photo of the person or product to keep (uploaded; repeatable).",
        ),
    ] = None,
    item: Annotated[
        list[str] | None,
        typer.Option(
            "--item",
            help='Something to include, found by a search: "red shawl" (its best hit) or '
            '"gold watch:2" (its top 2). Repeatable.',
        ),
    ] = None,
    base: Annotated[
        str | None, typer.Option("--base", help="Asset id of the image to edit (sent first).")
    ] = None,
    style: Annotated[
        list[str] | None,
        typer.Option("--style", help="Asset id of a style reference (repeatable)."),
    ] = None,
    kit: Annotated[
        str | None,
        typer.Option("--kit", help="A brand kit (NAME or NAME@N): its style, scored outputs."),
    ] = None,
    formats: Annotated[
        str | None,
        typer.Option(
            "--formats",
            help="The same scene in several ratios, e.g. 1:1,9:16,16:9 (the first is made, "
            "then sent as the base of the others).",
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Pick references by a text search.")
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=MAX_REFERENCES, help="References taken by --query.")
    ] = 3,
    count: Annotated[int, typer.Option(min=1, max=4, help="Images to make.")] = 1,
    aspect_ratio: Annotated[
        str | None, typer.Option("--aspect-ratio", help="1:1, 3:2, 16:9, 1:8, ...")
    ] = None,
    image_size: Annotated[
        str | None, typer.Option("--image-size", help="512, 1K, 2K or 4K.")
    ] = None,
    save: Annotated[
        bool,
        typer.Option("--save/--no-save", help="Store the results in the collection too."),
    ] = False,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="URL to POST the finished job to (signed).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the job to its end.")
    ] = True,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Image file to write [default: generated-<id>.png], or a folder (out/) for "
            "each image by number and ratio; with --from, a folder [default: generated-<id>/] "
            "for the images and results.jsonl.",
        ),
    ] = None,
) -> None:
    """Generate images from a prompt and reference sources: photos of the subject to keep
    (--subject, uploaded), searches of the collection (--item, --query), assets by id (--ref,
    --style, and --base for the image to edit); with none, from the prompt alone. --formats
    makes one scene in several ratios. With --from, many prompts in one job; the options
    given here are their defaults."""
    cli = cli_of(ctx)
    if (prompt is None) == (from_file is None):
        cli.fail("error usage: give a PROMPT or --from FILE (one of them)")
    options = SourceOptions(
        subjects=list(subject or []),
        items=list(item or []),
        refs=list(ref or []),
        styles=list(style or []),
        base=base,
        query=query,
        top_k=top_k,
    )
    body: dict[str, Any] = {
        "collection": collection,
        "save_to_collection": save,
        "aspect_ratio": aspect_ratio,
        "aspect_ratios": formats.split(",") if formats else None,
        "image_size": image_size,
        "kit": kit,
        "mode": "batch" if batch else "interactive",
        "webhook": webhook,
    }
    if from_file is not None:
        body["items"] = read_items(cli, from_file)
    else:
        body |= {"prompt": prompt, "count": count}
    with cli.api_errors(), cli.client() as client:
        uploads = client.upload(options.subjects) if options.subjects else []
        if options.given:
            sources = validated(cli, lambda: options.request([u.upload_id for u in uploads]))
            body["references"] = sources.references
        given = {k: v for k, v in body.items() if v is not None}
        request = validated(cli, lambda: GenerateRequest.model_validate(given))
        job = client.submit(
            JobKind.generate,
            request,
            wait=SUBMIT_WAIT_S if wait and not batch else None,
            idempotency_key=str(uuid.uuid4()),
        )
        mode = "batch " if batch else ""
        cli.err.print(f"generate {mode}job {job.id}")
        if not wait:
            cli.console.print(job.id)
            cli.err.print(f"follow it with `assetrag jobs {job.id}`; `assetrag results {job.id}`")
            return
        job = finish(cli, client, job, "generate")
        if request.bulk:
            _save_bulk(cli, client, job, output)
            return
        if job.state != JobState.completed or not isinstance(job.result, GenerateResult):
            code, message = (job.error.code, job.error.message) if job.error else (job.state, "")
            cli.fail(f"error {code}: {message or 'generation did not complete'}", EXIT_JOB_FAILED)
        _save_outputs(cli, client, job.id, job.result, output)


def describe(source: UsedSource) -> str:
    """One source as used, on one line: its role, label and what it sent."""
    label = f" {source.label!r}" if source.label else ""
    sent = ", ".join(
        f"{hit.asset_id[:12]}" + (f" ({hit.score:.3f})" if hit.score is not None else "")
        for hit in source.hits
    )
    if source.upload_id:
        sent = f"upload {source.upload_id} sha256 {(source.sha256 or '')[:12]}"
    elif source.url:
        sent = source.url
    return f"{source.role}{label}: {source.kind} {sent}".rstrip()


def brand_line(score: BrandScore) -> str:
    """An output's scores against its kit, on one line."""
    verdict = "passed" if score.passed else (score.code or "off_brand")
    parts = [f"brand {score.kit}: {verdict}"]
    if score.similarity is not None:
        parts.append(f"similarity {score.similarity:.3f}")
    if score.palette_distance is not None:
        parts.append(f"palette distance {score.palette_distance:.1f}")
    parts.append(f"{score.attempts} attempt(s)")
    return ", ".join(parts)


def usage_line(usage: Usage) -> str:
    """What the job asked of Gemini and cost, on one line."""
    cost = "" if usage.estimated_cost_usd is None else f", about ${usage.estimated_cost_usd:.3f}"
    return (
        f"usage: {usage.calls} Gemini call(s), {usage.images_returned} image(s) returned, "
        f"{usage.images_billed} billed{cost}"
    )


def _save_bulk(cli: CliContext, client: AssetragClient, job: Job, output: Path | None) -> None:
    """Every item's images and the results file into one folder."""
    if job.error is not None:
        cli.fail(f"error {job.error.code}: {job.error.message}", EXIT_JOB_FAILED)
    folder = output or Path(f"generated-{job.id[:8]}")
    folder.mkdir(parents=True, exist_ok=True)
    lines = client.results(job.id)
    for line in lines:
        if line.status != "succeeded" or not isinstance(line.result, dict):
            message = line.error.message if line.error else line.status
            cli.err.print(f"[yellow]item {line.index}: {escape(message)}[/yellow]")
            continue
        for n, image in enumerate(line.result.get("images", [])):
            ext = image["mime_type"].split("/")[-1].replace("jpeg", "jpg")
            path = folder / f"item-{line.index:04d}-{n}.{ext}"
            path.write_bytes(client.content(image["content_url"]))
    (folder / "results.jsonl").write_text(
        "".join(line.model_dump_json(exclude_none=True) + "\n" for line in lines)
    )
    p = job.progress
    cli.console.print(
        f"{job.state.value}: {p.succeeded} of {p.total} item(s) made images, {p.failed} failed; "
        f"saved to {escape(str(folder))}/"
    )
    if isinstance(job.result, GenerateResult):
        cli.console.print(usage_line(job.result.usage))
    if job.state != JobState.completed or p.succeeded == 0:
        raise typer.Exit(EXIT_JOB_FAILED)


def _save_outputs(
    cli: CliContext,
    client: AssetragClient,
    job_id: str,
    result: GenerateResult,
    output: Path | None,
) -> None:
    images = result.images
    for image, path in zip(images, _output_paths(job_id, images, output), strict=True):
        _save_image(client.content(image.content_url), image.mime_type, path)
        ratio = f" {image.aspect_ratio}" if image.aspect_ratio else ""
        extra = f" (asset {image.asset_id})" if image.asset_id else ""
        cli.console.print(
            f"saved {escape(str(path))} {image.width}x{image.height}{ratio}{escape(extra)}"
        )
        if image.brand is not None:
            cli.console.print(f"  {escape(brand_line(image.brand))}")
    if result.text:
        cli.console.print(f"text: {escape(result.text)}")
    cli.console.print(f"references: {escape(', '.join(result.references)) or '-'}")
    for source in result.sources:
        cli.console.print(f"  {escape(describe(source))}")
    cli.console.print(f"model: {escape(result.model)}")
    if result.brand is not None:
        cli.console.print(brand_line(result.brand))
    cli.console.print(usage_line(result.usage))
    if not images:
        cli.err.print("[yellow]the model returned no image[/yellow]")
        raise typer.Exit(EXIT_JOB_FAILED)
