"""Profile x bundle pair features, computed from feature names (no schema-specific code).

:class:`PairFeatures` appends to every candidate row:

* **profile-match flags**, one per categorical bundle field that a profile field names the same
  way (``groupbuy.cuisines=hotpot`` with ``deal.cuisine=hotpot``; the profile field may be the
  bundle field's plural): ``sum_v x[<profile>=v] * z[<bundle>=v]``, "the deal's cuisine is one the
  user lists";
* **numeric crosses**: every numeric profile column (standardized) times every numeric bundle
  column (``deal.price``, ``deal.discount``, ...), e.g. price sensitivity x discount;
* **bundle crosses**: the product of two categorical bundle fields' one-hots (``course.topic`` x
  ``deal.cuisine``: "a wine course with a western dinner"), a property of the bundle that is
  shared by every bundle with the same pair of values;
* **part one-hots**: one column per deal and per course (the first ``part_slots`` of each, by
  catalog row): a deal's own quality is learned from every bundle that contains it, which is why a
  shared model beats one model per bundle when a bundle's appeal comes mostly from its parts.
  Deals and courses beyond ``part_slots`` get no column (their bundles still have the per-bundle
  term of the hybrid policies); catalogs of thousands of parts need a sparse model instead.

Both are a low-dimensional substitute for the full ``x (x) z`` outer product (47 x 28 = 1,316 on the
demo world): a few dozen columns that carry the interactions a shared linear model needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

__all__ = ["PairFeatures", "exchangeable_groups", "one_hot_columns"]

FloatArray = NDArray[np.float64]
_SKIP_LABELS = frozenset({"<unknown>", "<other>", "<missing>"})


class PairFeatures:
    """Index plan for the pair features of one (context names, bundle names) layout."""

    def __init__(
        self,
        x_names: Sequence[str],
        z_names: Sequence[str],
        *,
        match: bool,
        crosses: bool,
        known_crosses: bool = False,
        bundle_crosses: Sequence[tuple[str, str]] = (),
        part_slots: int | tuple[int, int] = 0,
    ) -> None:
        self.match_blocks: list[tuple[str, NDArray[np.intp], NDArray[np.intp]]] = []
        if match:
            by_field: dict[str, dict[str, int]] = {}
            for j, n in enumerate(z_names):
                field, eq, label = n.partition("=")
                if eq and label not in _SKIP_LABELS:
                    by_field.setdefault(field, {})[label] = j
            for field, labels in by_field.items():
                stem = field.split(".", 1)[1]
                ix, iz = [], []
                for i, n in enumerate(x_names):
                    xf, eq, label = n.partition("=")
                    if not eq or "." not in xf:
                        continue
                    if xf.split(".", 1)[1] in (stem, stem + "s") and label in labels:
                        ix.append(i)
                        iz.append(labels[label])
                if ix:
                    self.match_blocks.append(
                        (field, np.asarray(ix, dtype=np.intp), np.asarray(iz, dtype=np.intp))
                    )
        self.x_num = np.asarray(
            [
                i
                for i, n in enumerate(x_names)
                if crosses
                and "=" not in n
                and n != "intercept"
                and not n.startswith("known.")
                and "." in n
                and not n.startswith("behaviour")
            ],
            dtype=np.intp,
        )
        self.z_num = np.asarray(
            [j for j, n in enumerate(z_names) if crosses and "=" not in n and n != "bundle.bias"],
            dtype=np.intp,
        )
        # "known on platform P" x every bundle column: lets the shared model hold separate
        # population estimates for users without a profile (cold start backs off to them)
        self.x_known = np.asarray(
            [i for i, n in enumerate(x_names) if known_crosses and n.startswith("known.")],
            dtype=np.intp,
        )
        self.z_all = np.asarray(
            [j for j, n in enumerate(z_names) if known_crosses and n != "bundle.bias"],
            dtype=np.intp,
        )
        self.cross_blocks: list[tuple[NDArray[np.intp], NDArray[np.intp]]] = []
        cross_names: list[str] = []
        for a, b in bundle_crosses:
            ia, ib = one_hot_columns(z_names, a), one_hot_columns(z_names, b)
            if ia.size == 0 or ib.size == 0:
                raise ConfigError.for_field(
                    "behaviour.bundle_crosses",
                    f"{a} x {b}",
                    "must name two categorical bundle fields (e.g. 'course.topic', 'deal.cuisine')",
                )
            self.cross_blocks.append((ia, ib))
            cross_names += [f"{z_names[i]}*{z_names[j]}" for i in ia for j in ib]
        slots = (part_slots, part_slots) if isinstance(part_slots, int) else part_slots
        self.part_slots: tuple[int, int] = (int(slots[0]), int(slots[1]))
        # bundle-only columns first (bundle crosses, part one-hots), then the user-dependent
        # ones: a candidate row [z, static pairs] is then a fixed prefix per bundle, which the
        # pair policies cache (see PairUCB)
        static = (
            cross_names
            + [f"deal[{i}]" for i in range(self.part_slots[0])]
            + [f"course[{i}]" for i in range(self.part_slots[1])]
        )
        self.n_static = len(static)
        self.names = (
            static
            + [f"match.{f}" for f, _, _ in self.match_blocks]
            + [f"{z_names[j]}*{x_names[i]}" for j in self.z_num for i in self.x_num]
            + [f"{z_names[j]}*{x_names[i]}" for i in self.x_known for j in self.z_all]
        )
        self.width = len(self.names)

    def compute(
        self,
        x: FloatArray,
        Z: FloatArray,
        parts: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None,
    ) -> FloatArray:
        """Pair features of every candidate row of ``Z`` for context ``x``: ``(k, width)``.

        ``parts`` holds the candidates' (deal rows, course rows) in the catalog (needed when
        ``part_slots > 0``)."""
        return np.hstack([self.compute_static(Z, parts), self.compute_dynamic(x, Z)])

    def compute_static(
        self, Z: FloatArray, parts: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None
    ) -> FloatArray:
        """The bundle-only columns (bundle crosses, part one-hots): ``(k, n_static)``."""
        k = Z.shape[0]
        out = np.zeros((k, self.n_static))
        c = 0
        for ia, ib in self.cross_blocks:
            w = ia.size * ib.size
            out[:, c : c + w] = (Z[:, ia][:, :, None] * Z[:, ib][:, None, :]).reshape(k, -1)
            c += w
        if any(self.part_slots) and parts is not None:
            rows = np.arange(k)
            for part, n, start in zip(
                parts, self.part_slots, (c, c + self.part_slots[0]), strict=True
            ):
                ok = part < n
                out[rows[ok], start + part[ok]] = 1.0
        return out

    def compute_dynamic(self, x: FloatArray, Z: FloatArray) -> FloatArray:
        """The user-dependent columns (match flags, crosses): ``(k, width - n_static)``."""
        k = Z.shape[0]
        out = np.zeros((k, self.width - self.n_static))
        c = 0
        for _, ix, iz in self.match_blocks:
            out[:, c] = Z[:, iz] @ x[ix]
            c += 1
        if self.x_num.size and self.z_num.size:
            w = self.x_num.size * self.z_num.size
            out[:, c : c + w] = (
                Z[:, self.z_num][:, :, None] * x[self.x_num][None, None, :]
            ).reshape(k, -1)
            c += w
        if self.x_known.size and self.z_all.size:
            out[:, c:] = (
                (x[self.x_known][:, None, None] * Z[:, self.z_all][None, :, :])
                .transpose(1, 0, 2)
                .reshape(k, -1)
            )
        return out


def _family(name: str) -> str | None:
    """The one-hot family of a column name, or ``None`` for a numeric column: ``deal[3]`` ->
    ``deal[]``, ``course.topic=wine`` -> ``course.topic``, ``course.topic=wine*deal.cuisine=hotpot``
    -> ``course.topic*deal.cuisine``, ``course.topic=wine*known.groupbuy`` ->
    ``course.topic*known.groupbuy``; a cross with no categorical factor is numeric."""
    if name.endswith("]") and "[" in name:
        return name[: name.index("[")] + "[]"
    parts = name.split("*")
    if not any("=" in part for part in parts):
        return None
    return "*".join(part.partition("=")[0] for part in parts)


def exchangeable_groups(names: Sequence[str]) -> tuple[NDArray[np.intp], ...]:
    """Indices of the columns of ``names`` grouped by one-hot family (:func:`_family`), families
    of at least two columns only, in order of first appearance.

    Exactly one column of a family is set for a bundle (or for a bundle and a known platform),
    so the family's coefficients are exchangeable effects of one kind, such as "this deal" or
    "this topic with this cuisine": the pair policies give each family its own empirical prior
    (:class:`~bandit_engine.policies.pair.PairUCB`), so that a new deal starts with the spread
    the existing deals' effects show."""
    by: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        key = _family(name)
        if key is not None:
            by.setdefault(key, []).append(j)
    return tuple(np.asarray(v, dtype=np.intp) for v in by.values() if len(v) >= 2)


def one_hot_columns(z_names: Sequence[str], field: str) -> NDArray[np.intp]:
    """Columns ``<field>=<label>`` of ``z_names`` (the unknown/other labels excluded)."""
    out = []
    for j, n in enumerate(z_names):
        f, eq, label = n.partition("=")
        if eq and f == field and label not in _SKIP_LABELS:
            out.append(j)
    return np.asarray(out, dtype=np.intp)
