"""shared.gemini against the real google-genai SDK, pointed at the fake Gemini by base_url."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from PIL import Image

from shared.gemini import (
    GeminiConfig,
    GeminiGenerator,
    GenerationError,
    ReferenceImage,
    RpmLimiter,
)
from tests.support.fake_gemini import FakeGemini, image_size_for

MODEL = "gemini-3.1-flash-image"
KEY = "test-key"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY) as server:
        yield server


def make_generator(
    fake: FakeGemini, limiter: RpmLimiter | None = None, **kwargs: Any
) -> GeminiGenerator:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "timeout_s": 10,
        "max_attempts": 4,
        "retry_budget_s": 20,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    options.update(kwargs)
    return GeminiGenerator(GeminiConfig(KEY, MODEL, **options), limiter)


@pytest.fixture()
def generator(fake: FakeGemini) -> GeminiGenerator:
    return make_generator(fake)


@pytest.fixture()
def redis_db(redis_client: redis.Redis) -> redis.Redis:
    """The suite's private Redis (a fresh database per test)."""
    return redis_client


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 8), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def unique(text: str) -> str:
    """Prompts are counted per text by the fake server: keep every test's own."""
    return f"{text} #{uuid.uuid4().hex[:8]}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def expect_error(generator: GeminiGenerator, prompt: str, **kwargs: Any) -> GenerationError:
    with pytest.raises(GenerationError) as info:
        run(generator.generate(prompt, [], **kwargs))
    return info.value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- success paths -----------------------------------------------------------------------


def test_success_sends_prompt_and_references_in_order(fake: FakeGemini, generator: GeminiGenerator):
    refs = [
        ReferenceImage(png((255, 0, 0)), "image/png", role="base"),
        ReferenceImage(png((0, 0, 255), fmt="JPEG"), "image/jpeg", "subject", "the player"),
        ReferenceImage(png((0, 255, 0)), "image/png", "item", "the red shawl"),
    ]
    prompt = unique("a red silk shawl on a mannequin")
    out = run(generator.generate(prompt, refs))

    assert out.model == MODEL
    assert out.text == "Here is your image."
    assert len(out.images) == 1
    image = out.images[0]
    assert image.mime_type == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)

    (seen,) = fake.requests_for(prompt)
    assert seen.path == f"/v1/models/{MODEL}:generateContent"
    assert seen.model == MODEL
    assert seen.prompt == prompt
    assert seen.headers["x-goog-api-key"] == KEY
    assert seen.reference_count == 3
    assert seen.reference_sha256 == [sha(r.data) for r in refs]
    assert seen.reference_mime_types == ["image/png", "image/jpeg", "image/png"]
    # each image after the service's caption, numbered, with its role and label; the prompt last
    assert seen.parts == [
        "text:Image 1 is the base image to edit: change only what the instruction below asks "
        "and keep everything else as it is.",
        f"image:{sha(refs[0].data)}",
        "text:Image 2 shows the subject to keep (the player): keep their identity, face, "
        "shape and details exactly as they are.",
        f"image:{sha(refs[1].data)}",
        "text:Image 3 shows an item to include (the red shawl).",
        f"image:{sha(refs[2].data)}",
        f"text:{prompt}",
    ]
    assert seen.response_modalities == ["TEXT", "IMAGE"]
    assert seen.image_config == {}
    assert seen.headers["x-server-timeout"] == "10"  # HttpOptions.timeout is in ms


def test_image_config_is_passed_through(fake: FakeGemini, generator: GeminiGenerator):
    prompt = unique("wide banner")
    out = run(generator.generate(prompt, [], aspect_ratio="16:9", image_size="2K"))
    (seen,) = fake.requests_for(prompt)
    assert seen.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert Image.open(io.BytesIO(out.images[0].data)).size == image_size_for("16:9", "2K")
    assert image_size_for("16:9", None) == (112, 63)

    prompt = unique("portrait")
    run(generator.generate(prompt, [], aspect_ratio="2:3"))
    (seen,) = fake.requests_for(prompt)
    assert seen.image_config == {"aspectRatio": "2:3"}


def test_thought_parts_are_skipped(fake: FakeGemini, generator: GeminiGenerator):
    prompt = unique("two variants [images:2]")
    out = run(generator.generate(prompt, []))
    (seen,) = fake.requests_for(prompt)
    assert seen.thought_image_sha256, "the fake must send a draft image as a thought part"
    got = [sha(image.data) for image in out.images]
    assert got == seen.final_image_sha256
    assert not set(got) & set(seen.thought_image_sha256)
    assert "Planning" not in out.text and "draft" not in out.text
    assert out.text == "Here is your image."


def test_variants_of_one_prompt_differ(generator: GeminiGenerator):
    prompt = unique("same prompt")

    async def both() -> list[Any]:
        return list(await asyncio.gather(*(generator.generate(prompt, []) for _ in range(2))))

    first, second = run(both())
    assert first.images[0].data != second.images[0].data


def test_one_generator_serves_several_event_loops(generator: GeminiGenerator):
    # Celery tasks may asyncio.run() each call; the SDK keeps a connection pool per loop.
    for _ in range(2):
        assert run(generator.generate(unique("loop"), [])).images


# ---- retries -----------------------------------------------------------------------------


def test_429_twice_then_success_honours_retry_after_header(
    fake: FakeGemini, generator: GeminiGenerator
):
    prompt = unique("busy [fail:429x2] [retry-after:0.4]")
    started = time.monotonic()
    out = run(generator.generate(prompt, []))
    elapsed = time.monotonic() - started
    assert out.images
    assert [r.status for r in fake.requests_for(prompt)] == [429, 429, 200]
    # backoff alone would be ~0.02 s; two Retry-After waits of 0.4 s were honoured
    assert 0.8 <= elapsed < 3


def test_429_honours_retry_info_detail(fake: FakeGemini, generator: GeminiGenerator):
    prompt = unique("busy [fail:429x1] [retry-info:0.5]")
    started = time.monotonic()
    assert run(generator.generate(prompt, [])).images
    assert 0.5 <= time.monotonic() - started < 2.5
    assert [r.status for r in fake.requests_for(prompt)] == [429, 200]


def test_retry_after_beyond_the_budget_gives_up_at_once(fake: FakeGemini):
    generator = make_generator(fake, retry_budget_s=2)
    prompt = unique("quota gone [fail:429] [retry-after:30]")
    started = time.monotonic()
    error = expect_error(generator, prompt)
    assert time.monotonic() - started < 1.5
    assert (error.code, error.status, error.reason) == ("upstream_error", 429, "RESOURCE_EXHAUSTED")
    assert len(fake.requests_for(prompt)) == 1


def test_503_then_success(fake: FakeGemini, generator: GeminiGenerator):
    prompt = unique("overloaded [fail:503x1]")
    assert run(generator.generate(prompt, [])).images
    assert [r.status for r in fake.requests_for(prompt)] == [503, 200]


def test_persistent_500_is_upstream_error_after_max_attempts(
    fake: FakeGemini, generator: GeminiGenerator
):
    prompt = unique("broken [fail:500]")
    error = expect_error(generator, prompt)
    assert error.code == "upstream_error"
    assert error.status == 500
    assert "internal error" in error.message
    assert len(fake.requests_for(prompt)) == generator.config.max_attempts == 4


def test_other_4xx_is_not_retried(fake: FakeGemini, generator: GeminiGenerator):
    prompt = unique("bad request [fail:400]")
    error = expect_error(generator, prompt)
    assert (error.code, error.status, error.reason) == ("upstream_error", 400, "INVALID_ARGUMENT")
    assert len(fake.requests_for(prompt)) == 1


def test_wrong_api_key_is_upstream_400(fake: FakeGemini):
    generator = GeminiGenerator(GeminiConfig("wrong", MODEL, base_url=fake.base_url, timeout_s=5))
    error = expect_error(generator, unique("hello"))
    assert error.status == 400 and "API key not valid" in error.message


def test_per_call_timeout(fake: FakeGemini):
    generator = make_generator(fake, timeout_s=0.5, max_attempts=2)
    prompt = unique("slow [slow:3]")
    started = time.monotonic()
    error = expect_error(generator, prompt)
    assert error.code == "timeout"
    assert time.monotonic() - started < 2.5  # two attempts of 0.5 s, not 2 x 3 s
    assert len(fake.requests_for(prompt)) == 2


def test_unreachable_server_is_upstream_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = GeminiConfig(
        KEY,
        MODEL,
        base_url=f"http://127.0.0.1:{port}",
        timeout_s=2,
        max_attempts=2,
        backoff_initial_s=0.01,
    )
    generator = GeminiGenerator(config)
    error = expect_error(generator, "hello")
    assert error.code == "upstream_error" and error.status is None


# ---- answers without an image ------------------------------------------------------------


def test_prompt_block(generator: GeminiGenerator):
    error = expect_error(generator, unique("[block:prompt]"))
    assert (error.code, error.reason) == ("blocked", "SAFETY")
    error = expect_error(generator, unique("[block:prompt:PROHIBITED_CONTENT]"))
    assert (error.code, error.reason) == ("blocked", "PROHIBITED_CONTENT")


def test_image_safety_block(generator: GeminiGenerator):
    error = expect_error(generator, unique("[block:image]"))
    assert (error.code, error.reason) == ("blocked", "IMAGE_SAFETY")
    error = expect_error(generator, unique("[finish:IMAGE_PROHIBITED_CONTENT]"))
    assert (error.code, error.reason) == ("blocked", "IMAGE_PROHIBITED_CONTENT")


def test_text_only_answer_is_no_image_with_the_text(generator: GeminiGenerator):
    error = expect_error(generator, unique("[text-only]"))
    assert error.code == "no_image"
    assert "I can describe it" in error.message
    error = expect_error(generator, unique("[finish:NO_IMAGE]"))
    assert (error.code, error.reason) == ("no_image", "NO_IMAGE")


def test_no_key_is_not_configured():
    generator = GeminiGenerator(GeminiConfig(None, MODEL))
    assert not generator.configured
    error = expect_error(generator, "hello")
    assert error.code == "generator_not_configured"
    assert not GeminiGenerator(GeminiConfig("  ", MODEL)).configured


def test_the_generator_and_the_batches_read_the_settings_once(redis_db: redis.Redis):
    from shared.gemini import GeminiBatches
    from shared.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        gemini_api_key=" k ",
        gemini_model="m",
        gemini_base_url="http://127.0.0.1:9",
        gemini_timeout_s=7,
        gemini_max_attempts=2,
        gemini_retry_budget_s=9,
        gemini_rpm=3,
        gemini_batch_inline_bytes=1234,
    )
    config = GeminiConfig.from_settings(settings)
    assert config == GeminiConfig(" k ", "m", "http://127.0.0.1:9", 7, 2, 9)
    assert config.key == "k"
    generator = GeminiGenerator.from_settings(settings, redis_db)
    batches = GeminiBatches.from_settings(settings)
    try:
        assert generator.config == batches.config == config
        assert generator.configured and batches.client is not None
        assert generator.limiter is not None
        assert (generator.limiter.rpm, generator.limiter.key) == (3, "assetrag:gemini:rpm:m")
        assert batches.inline_limit_bytes == 1234
    finally:
        generator.close()
        batches.close()


def test_generation_error_pickles():
    error = GenerationError("upstream_error", "boom", status=503, reason="UNAVAILABLE")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message, copy.status, copy.reason) == (
        "upstream_error",
        "boom",
        503,
        "UNAVAILABLE",
    )
    assert "status=503" in str(copy)


# ---- concurrency and rate limits ---------------------------------------------------------


def test_twelve_slow_calls_run_side_by_side(fake: FakeGemini, generator: GeminiGenerator):
    tag = unique("concurrent")

    async def many() -> list[Any]:
        return list(
            await asyncio.gather(
                *(generator.generate(f"{tag} {i} [slow:1]", []) for i in range(12))
            )
        )

    started = time.monotonic()
    outputs = run(many())
    elapsed = time.monotonic() - started
    assert all(out.images for out in outputs)
    assert len(fake.requests_for(tag)) == 12
    assert elapsed < 4, f"12 one-second calls took {elapsed:.1f}s"


def test_rpm_limiter_is_shared_across_instances(redis_db: redis.Redis):
    name = uuid.uuid4().hex
    rpm, window = 4, 1.0
    sync_limiter = RpmLimiter(redis_db, rpm, window_s=window, name=name)
    times: list[float] = []

    async def scenario() -> None:
        kwargs = redis_db.connection_pool.connection_kwargs
        async_client = redis.asyncio.Redis(
            host=kwargs["host"], port=kwargs["port"], db=kwargs["db"]
        )
        async_limiter = RpmLimiter(async_client, rpm, window_s=window, name=name)

        async def take(limiter: RpmLimiter) -> None:
            await limiter.acquire()
            times.append(time.monotonic())

        try:
            await asyncio.gather(*(take(lim) for lim in [sync_limiter, async_limiter] * 5))
        finally:
            await async_client.aclose()

    started = time.monotonic()
    run(scenario())
    times.sort()
    assert len(times) == 10
    # no 1-second window holds more than 4 acquisitions (small slack for clock granularity)
    for i in range(len(times) - rpm):
        assert times[i + rpm] - times[i] >= window - 0.05
    assert 1.9 <= time.monotonic() - started < 4.5  # 10 slots at 4 a second: windows 0, 1, 2
    assert redis_db.exists(f"assetrag:gemini:rpm:{name}")


def test_rpm_zero_means_unlimited(redis_db: redis.Redis):
    limiter = RpmLimiter(redis_db, 0, name=uuid.uuid4().hex)

    async def burst() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(50)))

    started = time.monotonic()
    run(burst())
    assert time.monotonic() - started < 0.5


def test_limiter_is_awaited_before_every_attempt(fake: FakeGemini, redis_db: redis.Redis):
    limiter = RpmLimiter(redis_db, 2, window_s=1.0, name=uuid.uuid4().hex)
    generator = make_generator(fake, limiter=limiter)
    prompt = unique("limited [fail:429x2]")
    started = time.monotonic()
    assert run(generator.generate(prompt, [])).images
    # three attempts, two allowed per second: the third waits for the window
    assert time.monotonic() - started >= 0.9
    assert len(fake.requests_for(prompt)) == 3


# ---- the fake as a standalone process ----------------------------------------------------


def test_fake_runs_as_a_script():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_gemini", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        config = GeminiConfig(KEY, MODEL, base_url=f"http://127.0.0.1:{port}", timeout_s=5)
        generator = GeminiGenerator(config)
        out = run(
            generator.generate(
                "from another process", [ReferenceImage(png((1, 2, 3)), "image/png")]
            )
        )
        assert out.images
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_control_endpoint_queues_behaviours(fake: FakeGemini, generator: GeminiGenerator):
    body = json.dumps({"queue": ["fail:503", "block:image"]}).encode()
    request = urllib.request.Request(
        f"{fake.base_url}/_control",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["queued"] == 2
    prompt = unique("steered from outside")
    error = expect_error(generator, prompt)  # 503 (retried), then the image-safety block
    assert (error.code, error.reason) == ("blocked", "IMAGE_SAFETY")
    with urllib.request.urlopen(f"{fake.base_url}/_requests", timeout=5) as response:
        recorded = [r for r in json.load(response) if r["prompt"] == prompt]
    assert [r["status"] for r in recorded] == [503, 200]


# ── the Batch API, through the real SDK against the fake ────────────────────────────────────


def make_batches(fake: FakeGemini, inline_limit_bytes: int | None = None, **config: Any) -> Any:
    from shared.gemini import GeminiBatches

    limit = {} if inline_limit_bytes is None else {"inline_limit_bytes": inline_limit_bytes}
    return GeminiBatches(GeminiConfig(KEY, MODEL, fake.base_url, **config), **limit)


def wait_state(batches: Any, name: str, wanted: str, timeout_s: float = 10) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = batches.state(name)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == wanted:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{name} stayed {seen}")


@pytest.mark.parametrize("inline_limit", [10**9, 1], ids=["inline", "file"])
def test_a_batch_moves_through_its_states_and_answers_each_request(
    fake: FakeGemini, inline_limit: int
) -> None:
    from shared.gemini import BatchRequest, GenerationOutput

    batches = make_batches(fake, inline_limit_bytes=inline_limit)
    tag = uuid.uuid4().hex[:8]
    requests = [
        BatchRequest(
            "0:0", f"fine {tag}", [ReferenceImage(png((1, 2, 3)), "image/png")], "16:9", "2K"
        ),
        BatchRequest("1:0", f"blocked {tag} [block:prompt]", []),
        BatchRequest("2:0", f"broken {tag} [fail:500]", []),
    ]
    name, as_file = batches.create(requests, f"t-{tag}")
    assert as_file == (inline_limit == 1)
    assert name in fake.batches and fake.batches[name].from_file == as_file
    seen = wait_state(batches, name, "JOB_STATE_SUCCEEDED")
    states = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert seen in (states, states[1:]), seen  # (a slow first look may miss PENDING)
    state, answers = batches.results(name, [r.key for r in requests])
    assert state == "JOB_STATE_SUCCEEDED" and set(answers) == {"0:0", "1:0", "2:0"}
    fine = answers["0:0"]
    assert isinstance(fine, GenerationOutput)
    assert Image.open(io.BytesIO(fine.images[0].data)).size == image_size_for("16:9", "2K")
    assert isinstance(answers["1:0"], GenerationError) and answers["1:0"].code == "blocked"
    broken = answers["2:0"]
    assert isinstance(broken, GenerationError) and broken.code == "upstream_error"
    [sent] = [r for r in fake.requests if r.prompt == f"fine {tag}"]
    assert (sent.batch, sent.reference_count) == (name, 1)
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_a_cancelled_batch_ends_cancelled_without_answers(fake: FakeGemini) -> None:
    from shared.gemini import BatchRequest

    batches = make_batches(fake)
    name, _ = batches.create([BatchRequest("0:0", "held [batch:hold]", [])], "held")
    wait_state(batches, name, "JOB_STATE_RUNNING")
    time.sleep(fake.batch_done_after_s)
    assert batches.state(name) == "JOB_STATE_RUNNING"  # held past its time
    batches.cancel(name)
    assert name in fake.batch_cancels
    assert batches.results(name, ["0:0"]) == ("JOB_STATE_CANCELLED", {})


def test_batch_calls_without_a_key_or_to_an_unknown_batch_fail_clearly(fake: FakeGemini) -> None:
    from shared.gemini import GeminiBatches

    with pytest.raises(GenerationError) as unconfigured:
        GeminiBatches(GeminiConfig(None, "m")).state("batches/x")
    assert unconfigured.value.code == "generator_not_configured"
    with pytest.raises(GenerationError) as missing:
        make_batches(fake, max_attempts=1).state("batches/nope")
    assert missing.value.code == "upstream_error" and missing.value.status == 404
