"""A job as the API answers it: its states and kinds, its progress and item errors, the result
of each kind, a line of its results file, and the page that lists jobs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from shared.contract.collections import DuplicatesResult, ReindexResult
from shared.contract.common import ErrorInfo
from shared.contract.embed import EmbedResult
from shared.contract.generate import GenerateResult
from shared.contract.kits import BrandCheckResult
from shared.contract.search import SearchResult


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobState.completed, JobState.failed, JobState.cancelled})
ACTIVE_STATES = frozenset({JobState.queued, JobState.running})


class JobKind(StrEnum):
    embed = "embed"
    search = "search"
    generate = "generate"
    duplicates = "duplicates"
    reindex = "reindex"
    brand_check = "brand-check"


class Progress(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0


class ItemError(BaseModel):
    index: int
    source: str
    code: str = Field(description="an ErrorCode value")
    message: str


class JobSummary(BaseModel):
    """A job without its result and item errors: what lists carry."""

    id: str
    kind: JobKind
    state: JobState
    progress: Progress = Field(default_factory=Progress)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorInfo | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class ResultLine(BaseModel):
    """One line of GET /v1/jobs/{id}/results: an item's outcome, as OpenAI's batch output
    file gives it."""

    index: int
    status: Literal["succeeded", "failed", "cancelled"]
    result: Any = None
    error: ErrorInfo | None = None


JobResult = (
    EmbedResult
    | SearchResult
    | GenerateResult
    | DuplicatesResult
    | ReindexResult
    | BrandCheckResult
)


class Job(JobSummary):
    result: JobResult | None = None
    errors: list[ItemError] = Field(
        default_factory=list, description="per-item failures of a job that ran to its end"
    )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A list answer: newest first where it has an order; `next_cursor` pages on."""

    data: list[T]
    next_cursor: str | None = None
