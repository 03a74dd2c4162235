"""Localisation metrics by name: (attribution map HW, boolean mask HW) → one float per image.

The one registry of scores: the audit computes every ``audited`` metric per image
(``score_image``), and summary.json, the report's tables and ``compare`` list them from here.
Adding a metric = one function + one ``Metric(...)`` line in ``METRICS`` (README, "Adding a
metric / a condition").

The registry adds the localisation metrics of the Quantus toolkit (Hedström et al. 2023, JMLR
24(34)) to our own ``outside_mass``/``tell_mass``; every function is our own pure-numpy code.

Shared rules, so that numbers from different metrics can sit in one table:

* A metric is NaN — never a made-up number — when the mask is missing or empty, the map has a
  non-finite value, or the map carries no evidence (no positive value for the positive-evidence
  metrics, all zeros for ``relevance_mass_accuracy``).
* Rank-based metrics (pointing game, rank accuracy, top-k) break ties by *expectation*: tied
  pixels share the remaining places in proportion, which equals the mean over all random
  tie-breaks. The answer is therefore deterministic, and a constant map scores exactly the mask's
  area share (chance level) instead of whatever raster order happens to favour.
* Only the most-attributed pixels are ranked, i.e. ranks use signed values: for a signed map
  (LIME weights) strongly negative evidence is not "important" here.
* What counts as "top" can be given apart from the map (``rank``, an HW array of ranking keys):
  the metrics that use a top or a ranking (``tell_hit``, ``pointing_game``,
  ``relevance_rank_accuracy``, ``top_k_intersection``; ``Metric.ranked``) order pixels by it,
  while the mass metrics keep reading the map. LIME's map spreads each superpixel's weight over
  its pixels (weight / area) so that masses equal superpixel shares, but its *top* is the
  superpixel with the highest weight, not the highest weight per pixel: its ranking keys are
  each pixel's superpixel weight (``Attribution.rank_keys()``, from the segments and weights
  LIME attributions carry). Without ``rank`` the map is its own ranking (every other method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import distance_transform_edt

MetricFn = Callable[..., float]  # (attr HW, mask HW | None[, rank=HW | None]) -> float

NAN = float("nan")
DEFAULT_TOP_K_FRACTION = 0.05


@dataclass(frozen=True)
class Metric:
    """A named score. ``needs`` says which mask it is computed against: the object region
    (localisation quality) or the tell (shortcut use).

    ``audited`` metrics are computed for every (image, method) by every audit: they become
    per-sample columns, per-method means in summary.json (under ``summary_key``, default the
    name), report columns (headed ``label``) and paired differences in ``compare``. The others
    are on demand (``score_batch``): the literature's metrics, kept out of the audit so that a
    summary's keys stay what they were."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str
    needs: Literal["region", "tell"]
    audited: bool = False
    label: str = ""  # short column heading in the report (default: the name)
    summary_key: str = ""  # key of the per-method mean in summary.json (default: the name)
    digits: int = 3  # decimals shown in the report
    ranked: bool = False  # takes ``rank=``: which pixels are "top" (module docstring)

    @property
    def heading(self) -> str:
        return self.label or self.name

    @property
    def key(self) -> str:
        return self.summary_key or self.name

    def __call__(
        self, attr: np.ndarray, mask: np.ndarray | None, rank: np.ndarray | None = None
    ) -> float:
        if self.ranked and rank is not None:
            return self.fn(attr, mask, rank=rank)
        return self.fn(attr, mask)


def _ranking(attr: np.ndarray, rank: np.ndarray | None) -> np.ndarray | None:
    """The float64 array whose order says which pixels are top: ``rank`` when given (validated:
    same shape as the map; non-finite → None, i.e. NaN scores), else the map itself."""
    if rank is None:
        return np.asarray(attr, dtype=np.float64)
    r = np.asarray(rank, dtype=np.float64)
    if r.shape != np.shape(attr):
        raise ValueError(f"rank shape {r.shape} != attribution shape {np.shape(attr)}")
    return r if np.isfinite(r).all() else None


def _prepare(attr: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Validated float64 map and bool mask, or None when the score is undefined (→ NaN)."""
    if mask is None:
        return None
    a = np.asarray(attr, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if m.shape != a.shape:
        raise ValueError(f"mask shape {m.shape} != attribution shape {a.shape}")
    if not m.any() or a.size == 0 or not np.isfinite(a).all():
        return None
    return a, m


def _positive(attr: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(attr, dtype=np.float64), 0.0, None)


def mass_inside(attr: np.ndarray, mask: np.ndarray | None) -> float:
    """Share of positive attribution that lies inside ``mask`` (NaN if undefined): only
    *positive* attribution counts as evidence for the explained class."""
    if mask is None:
        return NAN
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != np.shape(attr):
        raise ValueError(f"mask shape {mask.shape} != attribution shape {np.shape(attr)}")
    pos = _positive(attr)
    total = pos.sum()
    if not mask.any() or total <= 0:
        return NAN
    return float(pos[mask].sum() / total)


def outside_mass(attr: np.ndarray, region: np.ndarray | None) -> float:
    """Share of positive attribution *outside* the object region (higher is worse)."""
    if _prepare(attr, region) is None:
        return NAN
    inside = mass_inside(attr, region)
    return NAN if np.isnan(inside) else 1.0 - inside


def tell_mass(attr: np.ndarray, tell: np.ndarray | None) -> float:
    """Share of positive attribution on the tell (higher is worse)."""
    return mass_inside(attr, tell) if _prepare(attr, tell) is not None else NAN


def tell_hit(attr: np.ndarray, tell: np.ndarray | None, rank: np.ndarray | None = None) -> float:
    """1.0 when the top-attributed region lands on the tell, else 0.0 (NaN if no tell).

    The top region is the set of pixels at the maximum of ``rank`` (default: the map): one
    pixel for gradient maps, the highest-weighted superpixel for LIME (``rank`` = each pixel's
    superpixel weight). It counts as on the tell when the overlap covers at least half of the
    smaller of the two — so a superpixel that swallowed a small tell counts, and so does a small
    superpixel inside a big tell, but not a big superpixel that merely grazes it."""
    if tell is None or not np.asarray(tell).any():
        return NAN
    a = np.asarray(attr, dtype=np.float64)
    r = _ranking(a, rank)
    if not np.isfinite(a).all() or r is None or r.max() <= 0:
        return NAN
    top = r == r.max()
    tell = np.asarray(tell, dtype=bool)
    overlap = (top & tell).sum()
    return float(overlap >= 0.5 * min(top.sum(), tell.sum()))


def area_fraction(mask: np.ndarray | None) -> float:
    """Chance level for a mass share: the mask's share of the image area."""
    if mask is None:
        return NAN
    return float(np.asarray(mask, dtype=bool).mean())


def _expected_top_k_hits(a: np.ndarray, m: np.ndarray, k: float) -> float:
    """Expected number of mask pixels among the ``k`` highest values under random tie-breaks."""
    flat, inside = a.ravel(), m.ravel()
    k = float(min(max(k, 0.0), flat.size))
    if k <= 0:
        return 0.0
    order = np.argsort(-flat, kind="stable")
    kth = flat[order[int(np.ceil(k)) - 1]]
    above = flat > kth
    tied = flat == kth
    slots = k - above.sum()  # places left for the tied pixels (may be fractional)
    share_tied_inside = inside[tied].sum() / tied.sum()
    return float(inside[above].sum() + slots * share_tied_inside)


def attribution_localisation(attr: np.ndarray, mask: np.ndarray | None) -> float:
    """Positive attribution inside the mask / total positive attribution.

    Kohlbrenner et al. 2020, "Towards best practice in explaining neural network decisions with
    LRP" (IJCNN), unweighted form as in Quantus' ``AttributionLocalisation``. Same number as
    ``1 - outside_mass``; kept under its literature name so reports can cite it."""
    return mass_inside(attr, mask) if _prepare(attr, mask) is not None else NAN


def relevance_mass_accuracy(attr: np.ndarray, mask: np.ndarray | None) -> float:
    """Σ|a| inside the mask / Σ|a| (Arras et al. 2022, "CLEVR-XAI", Information Fusion 81).

    Uses absolute values, so for a signed map it also counts strong *negative* evidence on the
    object; for non-negative maps (saliency) it equals ``attribution_localisation``."""
    prepared = _prepare(attr, mask)
    if prepared is None:
        return NAN
    a, m = prepared
    total = np.abs(a).sum()
    return NAN if total <= 0 else float(np.abs(a)[m].sum() / total)


def relevance_rank_accuracy(
    attr: np.ndarray, mask: np.ndarray | None, rank: np.ndarray | None = None
) -> float:
    """Share of the top-K attributed pixels that lie in the mask, K = |mask| (Arras et al. 2022).

    1.0 means the K most important pixels are exactly the mask; chance is the mask's area share.
    Pixels are ranked by ``rank`` when given (LIME: superpixel weight)."""
    prepared = _prepare(attr, mask)
    if prepared is None or (a := _ranking(prepared[0], rank)) is None:
        return NAN
    m = prepared[1]
    if a.max() <= 0:
        return NAN
    k = int(m.sum())
    return _expected_top_k_hits(a, m, k) / k


def pointing_game(
    attr: np.ndarray,
    mask: np.ndarray | None,
    tolerance: float = 0.0,
    rank: np.ndarray | None = None,
) -> float:
    """1.0 when the most attributed pixel lies in the mask (Zhang et al. 2018, "Top-down neural
    attention by excitation backprop", IJCV 126), else 0.0.

    ``tolerance`` (pixels, Euclidean) counts a maximum that close to the mask as a hit; the paper
    uses 15 px at ImageNet scale, our default is 0 because our images are 32–128 px and a tell is
    only a few pixels wide. Several tied maxima give the share of them that hit. The maximum is
    that of ``rank`` when given (LIME: the highest-weighted superpixel's pixels)."""
    prepared = _prepare(attr, mask)
    if prepared is None or (a := _ranking(prepared[0], rank)) is None:
        return NAN
    m = prepared[1]
    peak = a.max()
    if peak <= 0:
        return NAN
    hit = m if tolerance <= 0 else distance_transform_edt(~m) <= tolerance
    at_peak = a == peak
    return float(hit[at_peak].mean())


def top_k_intersection(
    attr: np.ndarray,
    mask: np.ndarray | None,
    k_fraction: float = DEFAULT_TOP_K_FRACTION,
    rank: np.ndarray | None = None,
) -> float:
    """Share of the top ``k_fraction`` of pixels (default 5 % of the image) inside the mask.

    Theiner et al. 2022, "Interpretable semantic photo geolocation" (WACV); Quantus fixes k at
    1000 pixels for 224² images (≈ 2 %). We use a fraction so images of any size compare, and a
    fixed k — unlike ``relevance_rank_accuracy`` — so the score also says how focused the map is
    independently of the mask's size. Its maximum is min(1, |mask| / k): a mask smaller than 5 %
    of the image (a small tell) cannot reach 1.0, which is why ``relevance_rank_accuracy`` is the
    one to threshold for small masks. Pixels are ranked by ``rank`` when given."""
    prepared = _prepare(attr, mask)
    if prepared is None or (a := _ranking(prepared[0], rank)) is None:
        return NAN
    m = prepared[1]
    if a.max() <= 0:
        return NAN
    k = max(1.0, float(np.ceil(k_fraction * a.size)))
    return _expected_top_k_hits(a, m, k) / k


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "outside_mass",
            outside_mass,
            False,
            "Share of positive attribution outside the object region.",
            "region",
            audited=True,
            label="outside object",
        ),
        Metric(
            "tell_mass",
            tell_mass,
            False,
            "Share of positive attribution on the tell.",
            "tell",
            audited=True,
            label="on tell",
        ),
        Metric(
            "tell_hit",
            tell_hit,
            False,
            "1 if the top-attributed pixel/superpixel lands on the tell (see ``tell_hit``).",
            "tell",
            audited=True,
            label="top on tell",
            summary_key="tell_top_rate",
            digits=2,
            ranked=True,
        ),
        Metric(
            "attribution_localisation",
            attribution_localisation,
            True,
            "Share of positive attribution inside the object region (Kohlbrenner et al. 2020).",
            "region",
        ),
        Metric(
            "relevance_mass_accuracy",
            relevance_mass_accuracy,
            True,
            "Share of absolute attribution inside the object region (Arras et al. 2022).",
            "region",
        ),
        Metric(
            "relevance_rank_accuracy",
            relevance_rank_accuracy,
            True,
            "Share of the |region| top-ranked pixels inside the region (Arras et al. 2022).",
            "region",
            ranked=True,
        ),
        Metric(
            "pointing_game",
            pointing_game,
            True,
            "1 if the most attributed pixel is in the region (Zhang et al. 2018).",
            "region",
            ranked=True,
        ),
        Metric(
            "top_k_intersection",
            top_k_intersection,
            True,
            "Share of the top 5 % of pixels inside the region (Theiner et al. 2022).",
            "region",
            ranked=True,
        ),
    )
}


def audited() -> list[Metric]:
    """The metrics every audit computes per image, in registry order (read at call time, so a
    metric registered at run time is audited from then on)."""
    return [m for m in METRICS.values() if m.audited]


def score_image(
    attr: np.ndarray,
    region: np.ndarray | None,
    tell: np.ndarray | None,
    rank: np.ndarray | None = None,
) -> dict:
    """Every audited metric of one map: ``{metric name: float}``, each against its mask;
    ``rank``: the map's ranking keys when they differ from the map (LIME: superpixel weight)."""
    return {m.name: m(attr, region if m.needs == "region" else tell, rank) for m in audited()}


def score_batch(
    maps: np.ndarray,
    masks: np.ndarray | Sequence[np.ndarray | None],
    metric_names: Sequence[str] | None = None,
    ranks: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Score N maps against N masks: ``{metric name: float64 array (N,)}``.

    ``masks`` is an (N, H, W) array or a list whose entries may be None (score NaN). All names
    are checked before any work, so a typo fails fast. Default: every registered metric.
    ``ranks`` (N, H, W): ranking keys for the ranked metrics (``Attribution.rank_keys()``)."""
    names = list(METRICS) if metric_names is None else list(metric_names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    maps = np.asarray(maps)
    if len(masks) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    out = {n: np.full(len(maps), np.nan, dtype=np.float64) for n in names}
    if ranks is not None and len(ranks) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(ranks)} rank maps")
    for i, (attr, mask) in enumerate(zip(maps, masks, strict=True)):
        rank = None if ranks is None else ranks[i]
        for n in names:
            out[n][i] = METRICS[n](attr, mask, rank)
    return out
