"""Request and response bodies of the policy server (pydantic, strict).

Every request model forbids unknown fields, is strict about types (no ``"1.5"`` for a number, no
``true`` for a number) and accepts finite numbers only: Python's JSON parser turns ``NaN``,
``Infinity`` and ``1e999`` into floats, and these models reject them. Strings must be valid UTF-8
(JSON can carry lone surrogates, which SQLite cannot store). Sizes are bounded so one request cannot
ask for unbounded work.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

__all__ = [
    "MAX_CANDIDATES",
    "MAX_RECORDS",
    "AdminResult",
    "BundleSpec",
    "BundlesAdd",
    "CoursesAdd",
    "DealsAdd",
    "DecisionRecord",
    "DecisionRequest",
    "DecisionResponse",
    "EventRecord",
    "EventRequest",
    "EventResponse",
    "ForgetRequest",
    "ForgetResponse",
    "Health",
    "ProfileUpsert",
    "Retire",
    "jsonable",
]

MAX_CANDIDATES = 1000
MAX_RECORDS = 1000
MAX_FIELDS = 256
MAX_PLATFORMS = 16
_INT_LIMIT = 2**53  # exactly representable as float64, so encoders never overflow


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from None
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_utf8)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_utf8)]
#: A client-chosen decision id is read back as a path segment (``GET /v1/decisions/{id}``), so it
#: is limited to characters that need no escaping there: letters, digits and ``. _ : ~ -``.
DecisionId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:~-]+$")
]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _INT_LIMIT:
            raise ValueError(f"must be an integer within +-2**53, got {value:.3g}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        return value
    if isinstance(value, str):
        if len(value) > 1024:
            raise ValueError(f"must be a string of at most 1024 characters, got {len(value)}")
        return _utf8(value)
    raise ValueError(f"must be a string, number, boolean or null, got {type(value).__name__}")


def _field_value(value: Any) -> Any:
    # one readable message per bad value instead of one per member of a type union
    if isinstance(value, list):
        if len(value) > 256:
            raise ValueError(f"must be a list of at most 256 values, got {len(value)}")
        return [_scalar(v) for v in value]
    return _scalar(value)


_SCALAR_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": 1024},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
FieldValue = Annotated[
    Any,
    AfterValidator(_field_value),
    WithJsonSchema(
        {
            "anyOf": [
                *_SCALAR_SCHEMA["anyOf"],
                {"type": "array", "items": _SCALAR_SCHEMA, "maxItems": 256},
            ]
        }
    ),
]
Fields = Annotated[dict[Name, FieldValue], Field(max_length=MAX_FIELDS)]
Profile = Annotated[dict[Name, Fields | None], Field(max_length=MAX_PLATFORMS)]
Record = Annotated[dict[Name, FieldValue], Field(max_length=MAX_FIELDS)]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DecisionRequest(BaseModel):
    """Ask for a decision for one user."""

    model_config = _STRICT

    user_id: Id = Field(description="Your user id; stored only as a keyed hash (HMAC-SHA256).")
    profile: Profile | None = Field(
        None,
        description="Inline profile {platform: {field: value}}, merged over the stored profile "
        "(inline values win).",
    )
    candidates: Annotated[list[Id], Field(min_length=1, max_length=MAX_CANDIDATES)] | None = Field(
        None, description="Only these bundle ids (those eligible for the user now) may be chosen."
    )
    decision_id: DecisionId | None = Field(
        None,
        description="Client-chosen decision id (must be new): 1 to 128 letters, digits or . _ : ~ -",
    )


class DecisionResponse(BaseModel):
    """The chosen bundle and the probability with which it was chosen."""

    decision_id: str
    bundle_id: str
    deal_id: str
    course_id: str
    propensity: float
    policy_version: str
    timestamp: float
    mode: str | None = Field(
        None,
        description="How the bundle was chosen when not by the policy alone: fallback:bundle, "
        "fallback:policy, apprentice:rule, apprentice:policy",
    )
    group: str | None = Field(
        None,
        description="Holdout group that chose (policy, or a holdout's name); absent without one",
    )


class EventRequest(BaseModel):
    """Report a click or an order for a decision."""

    model_config = _STRICT

    decision_id: Id
    type: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")] = Field(
        ...,
        description="click, order, or an event type the model's RewardSpec declares (e.g. "
        "deal_order, course_purchase); others get 422 naming the declared ones",
    )
    value: Annotated[float, Field(ge=0.0, le=1e12, allow_inf_nan=False)] = Field(
        0.0, description="Order value (orders only matter when the reward spec weights value)."
    )
    event_id: Id | None = Field(
        None, description="Client event id: the same id for the same decision counts once."
    )


class EventResponse(BaseModel):
    """How the event was taken: ``accepted``, ``duplicate`` or ``late`` (kept, not learned)."""

    decision_id: str
    event_id: str | None
    status: Literal["accepted", "duplicate", "late"]


class EventRecord(BaseModel):
    event_id: str | None
    type: str
    value: float
    timestamp: float
    status: str


class DecisionRecord(BaseModel):
    """A logged decision with its events and reward status."""

    decision_id: str
    timestamp: float
    bundle_id: str
    deal_id: str
    course_id: str
    propensity: float
    candidates: list[str]
    probabilities: list[float | None] | None
    scores: list[float | None]
    policy_version: str
    model_id: str
    status: Literal["pending", "learned", "default"]
    reward_status: Literal["pending", "learned", "default", "late"]
    reward: float | None
    closed_at: float | None
    n_events: int
    n_late: int
    events: list[EventRecord]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


PairWith = Literal["all"] | Annotated[list[Id], Field(min_length=1, max_length=MAX_RECORDS)]


class DealsAdd(BaseModel):
    """Deals to add (or update and re-activate), with the catalog's deal columns."""

    model_config = _STRICT

    deals: Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS)]
    pair_with: PairWith | None = Field(
        None,
        description="Catalogs with an explicit bundle list: pair each new deal with every active "
        "course ('all') or with these course ids; without it new deals are in no bundle (a "
        "warning is logged).",
    )


class CoursesAdd(BaseModel):
    """Courses to add (or update and re-activate), with the catalog's course columns."""

    model_config = _STRICT

    courses: Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS)]
    pair_with: PairWith | None = Field(
        None,
        description="Catalogs with an explicit bundle list: pair each new course with every "
        "active deal ('all') or with these deal ids.",
    )


class BundleSpec(BaseModel):
    model_config = _STRICT

    deal_id: Id
    course_id: Id
    bundle_id: Id | None = None


class BundlesAdd(BaseModel):
    """Explicit bundles to add (or re-activate)."""

    model_config = _STRICT

    bundles: Annotated[list[BundleSpec], Field(min_length=1, max_length=MAX_RECORDS)]


class Retire(BaseModel):
    """Ids to retire (stop offering; learned state is kept)."""

    model_config = _STRICT

    ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_RECORDS)]


class AdminResult(BaseModel):
    op: str
    seq: int
    added_bundles: list[str] = []


class ProfileUpsert(BaseModel):
    """Store or update a user's profile (per platform, field by field unless ``replace``)."""

    model_config = _STRICT

    user_id: Id
    profile: Annotated[dict[Name, Fields], Field(min_length=1, max_length=MAX_PLATFORMS)]
    replace: bool = False


class ForgetRequest(BaseModel):
    """Forget a user: delete their profile and every logged row under their pseudonym."""

    model_config = _STRICT

    user_id: Id


class ForgetResponse(BaseModel):
    deleted: dict[str, int]


def jsonable(value: Any) -> Any:
    """Floats that JSON cannot carry (inf, nan) become ``None``; containers are walked."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
