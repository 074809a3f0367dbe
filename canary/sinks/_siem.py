"""What the SIEM sinks (Splunk HEC, Elasticsearch / OpenSearch, Sentinel, Security Lake) share: the
options of the event feed (which committed events they take, and how many per request)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EventFeedOptions(BaseModel):
    """``events``: which committed events the feed sends besides the incidents (``unsuppressed``, the
    default; ``all``: suppressed ones too, marked with the rule's name; ``none``: incidents only).
    ``event_batch``: events per request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: Literal["unsuppressed", "all", "none"] = "unsuppressed"
    event_batch: int = Field(default=500, ge=1, le=10_000)
