"""Bradley–Terry ratings of systems from pairwise votes, as Chatbot Arena computes them.

Model: the left system ``a`` beats the right system ``b`` with probability
``sigmoid(theta_a - theta_b)`` (``theta`` in natural log-odds units). A tie and a "both bad" vote
both count as half a win for each side (Chatbot Arena scores "tie (bothbad)" the same way: neither
system was preferred), so the target ``y`` of a vote is 1, 0 or ½ and the loss is the logistic
(cross-entropy) loss ``-[y log p + (1-y) log(1-p)]``. The side a system was shown on plays no part
in the rating; :func:`backend.stats.rates.left_bias` measures whether it should.

Fitting works on *aggregated* votes — one row per distinct ``(model_a, model_b, outcome)`` with its
count as weight — so 100,000 votes over 10 systems are at most 360 weighted rows, and
``scipy.optimize.minimize(method="L-BFGS-B")`` with an analytic gradient fits them in about a
millisecond. All bootstrap rounds are fitted in one L-BFGS-B call (they share no parameter, see
:func:`_fit_thetas`).

What the bootstrap resamples (``cluster``). Votes are not independent when several annotators
and criteria judge the same pair, and several pairs share a prompt's images: a good or bad
image moves every vote it appears in. Resampling single votes then treats 720 correlated
votes as 720 independent ones and gives intervals that are too narrow (in a simulation with
3 annotators, 2 criteria and a per-image random effect, nominal 95 % intervals held the truth
in ~76 % of campaigns for one criterion and ~63 % with criteria pooled, against ~92 % for both
when prompts are resampled; ``bench/arena_coverage.py``).
With ``cluster="prompt"`` (the name of a vote column) the bootstrap draws *clusters* with
replacement — every vote of a drawn prompt comes along, as many times as the prompt was
drawn — which is the unit that was really sampled (a cluster bootstrap, as DESIGN.md asks).
Row counts per round are (multiplicity of each cluster) @ (cluster × aggregated-row counts),
so votes are never expanded here either. Without ``cluster`` single votes are resampled: one
multinomial draw over the aggregated rows, right only when every vote is its own unit.

Regularisation: ``l2 * sum(theta**2)`` is added to the *summed* loss, i.e. an independent Gaussian
prior N(0, 1/(2*l2)) on every theta. With the default ``l2=0.01`` that prior has a standard deviation
of ~7 logits (~1,230 rating points), far wider than any real gap, so it changes ordinary ratings by
well under 1 % — but it keeps a system that won every vote at a finite (large) rating instead of
running off to infinity. Because it acts on the summed loss, its weight fades as votes accumulate.

Scale: ``rating = init_rating + scale / ln(base) * (theta - centre)``, i.e. the Elo convention where
a 400-point gap means 10:1 odds. ``centre`` is the mean theta of all systems (default) or the theta of
a named ``anchor`` system, which then sits exactly at ``init_rating``.

Intervals are bootstrap *percentile* intervals (the ``(1-level)/2`` and ``(1+level)/2`` quantiles of
the resampled ratings, each round re-centred the same way). Ranks follow Chatbot Arena: a system's
rank is 1 + the number of systems whose lower bound lies above its upper bound, so systems whose
intervals overlap share a rank.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from backend.stats._votes import LEFT_SCORE, VoteDataError, aggregate_votes, describe_rows, normalize_votes

DEFAULT_L2 = 0.01
RATING_COLUMNS = ["system", "rating", "lower", "upper", "rank"]
SEPARATION_COLUMNS = [
    "system_a",
    "system_b",
    "diff",
    "se_diff",
    "lower",
    "upper",
    "separated",
    "n_votes",
    "votes_needed",
    "n_clusters",
    "clusters_needed",
]


class DisconnectedComparisonWarning(UserWarning):
    """Some systems were never compared, even indirectly: their relative ratings are not identified."""


@dataclass(frozen=True)
class _Design:
    """Aggregated votes as index arrays: row r compares systems[ia[r]] (left) and systems[ib[r]]."""

    systems: list[str]
    ia: np.ndarray
    ib: np.ndarray
    y: np.ndarray  # score of the left system: 1, 0 or 0.5
    w: np.ndarray  # number of votes behind the row

    @property
    def n_votes(self) -> int:
        return int(self.w.sum())


def _design(votes: pd.DataFrame, what: str, cluster: str | None = None) -> _Design:
    return _design_and_clusters(votes, what, cluster)[0]


def _design_and_clusters(
    votes: pd.DataFrame, what: str, cluster: str | None
) -> tuple[_Design, csr_matrix | None]:
    """The aggregated design and, with ``cluster``, its clusters × rows count matrix."""
    clean = normalize_votes(votes, what, extra=(cluster,) if cluster else ())
    agg = aggregate_votes(clean)
    systems = sorted(set(agg["model_a"]).union(agg["model_b"])) if len(agg) else []
    pos = {s: i for i, s in enumerate(systems)}
    design = _Design(
        systems=systems,
        ia=agg["model_a"].map(pos).to_numpy(dtype=np.int64),
        ib=agg["model_b"].map(pos).to_numpy(dtype=np.int64),
        y=agg["outcome"].map(LEFT_SCORE).to_numpy(dtype=float),
        w=agg["count"].to_numpy(dtype=float),
    )
    _warn_if_disconnected(design)
    clusters = _cluster_counts(clean, cluster, design, what) if cluster and not clean.empty else None
    return design, clusters


def _cluster_counts(votes: pd.DataFrame, cluster: str, d: _Design, what: str) -> csr_matrix:
    """clusters × design rows: how many votes of each cluster fall in each aggregated row.

    ``votes`` is the normalised table the design was built from; its rows are numbered in the
    same sorted (model_a, model_b, outcome) order as :func:`aggregate_votes` numbers its groups.
    """
    values = votes[cluster]
    blank = values.isna() | (values.astype("string").str.strip() == "")
    if blank.any():
        raise VoteDataError(
            f"{what}: cluster column {cluster!r} is empty in row(s) {describe_rows(votes.index[blank])}; "
            "every vote needs the unit it was sampled with (e.g. its prompt)"
        )
    row = votes.groupby(["model_a", "model_b", "outcome"], sort=True).ngroup().to_numpy()
    codes, uniques = pd.factorize(values.astype(str), sort=True)
    matrix = coo_matrix(
        (np.ones(len(row)), (codes, row)), shape=(len(uniques), len(d.ia))
    ).tocsr()  # duplicates are summed
    return matrix


def _warn_if_disconnected(d: _Design) -> None:
    k = len(d.systems)
    if k < 2:
        return
    graph = coo_matrix((np.ones(len(d.ia)), (d.ia, d.ib)), shape=(k, k))
    n_parts, labels = connected_components(graph, directed=False)
    if n_parts > 1:
        groups = [sorted(d.systems[i] for i in np.flatnonzero(labels == g)) for g in range(n_parts)]
        warnings.warn(
            f"systems fall into {n_parts} groups never compared with each other: {groups}; ratings are "
            "only comparable within a group (the L2 prior centres each group on the same value)",
            DisconnectedComparisonWarning,
            stacklevel=3,
        )


def _fit_thetas(d: _Design, weights: np.ndarray, l2: float, theta0: np.ndarray | None = None) -> np.ndarray:
    """Fit one theta vector per row of ``weights`` (rounds × design rows) in ONE L-BFGS-B run.

    Minimises the sum over rounds of (weighted logistic loss + l2*|theta|^2) / (votes in the round).
    The rounds share no parameter, so the joint minimum is every round's own minimum; one optimiser
    call with vectorised loss and gradient replaces ``rounds`` calls whose fixed Python overhead
    dominated (100 rounds: ~0.16 s → ~0.01–0.03 s; results equal to ~1e-6 logit). Dividing by R as
    well keeps the tolerances meaning the same for 1 round and for 1,000.
    """
    weights = np.atleast_2d(weights)
    rounds, k = weights.shape[0], len(d.systems)
    if k == 0:
        return np.zeros((rounds, 0))
    totals = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
    w = weights / (totals * rounds)
    l2_r = l2 / (totals * rounds)
    offset = np.arange(rounds)[:, None] * k
    flat_a = (offset + d.ia[None, :]).ravel()
    flat_b = (offset + d.ib[None, :]).ravel()

    def loss_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = x.reshape(rounds, k)
        diff = theta[:, d.ia] - theta[:, d.ib]
        loss = -np.sum(w * (d.y * log_expit(diff) + (1.0 - d.y) * log_expit(-diff)))
        loss += float(np.sum(l2_r * theta * theta))
        g_row = (w * (expit(diff) - d.y)).ravel()
        grad = np.bincount(flat_a, g_row, rounds * k) - np.bincount(flat_b, g_row, rounds * k)
        grad = grad.reshape(rounds, k) + 2.0 * l2_r * theta
        return float(loss), grad.ravel()

    start = np.zeros((rounds, k)) if theta0 is None else np.broadcast_to(theta0, (rounds, k))
    res = minimize(
        loss_grad,
        np.array(start, dtype=float).ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-11, "ftol": 1e-15, "maxiter": 5000},
    )
    return res.x.reshape(rounds, k)


def _fit_theta(d: _Design, w: np.ndarray, l2: float, theta0: np.ndarray | None = None) -> np.ndarray:
    """Fit one theta vector (logits, one per system) to the weights ``w`` of the design rows."""
    return _fit_thetas(d, w[None, :], l2, theta0)[0]


def _one_blas_thread() -> threadpool_limits:
    """Run the fits with one BLAS thread.

    L-BFGS-B works on vectors of ~10 numbers; a multi-threaded OpenBLAS only adds synchronisation,
    which on a busy 2-core machine made the bootstrap ~6x slower (measured: 2.5 s vs 0.43 s for
    10 x 100 rounds). threadpoolctl comes with scikit-learn.
    """
    return threadpool_limits(limits=1, user_api="blas")


def _to_ratings(
    theta: np.ndarray, centre_idx: int | None, scale: float, base: float, init_rating: float
) -> np.ndarray:
    """Map theta (last axis = systems) to the Elo-like scale, centred on the mean or on one system."""
    centre = (
        theta.mean(axis=-1, keepdims=True) if centre_idx is None else theta[..., centre_idx : centre_idx + 1]
    )
    return init_rating + scale / math.log(base) * (theta - centre)


def _anchor_index(d: _Design, anchor: str | None) -> int | None:
    if anchor is None:
        return None
    if anchor not in d.systems:
        raise VoteDataError(f"anchor system {anchor!r} does not appear in the votes; systems: {d.systems}")
    return d.systems.index(anchor)


def _check_params(l2: float, scale: float, base: float) -> None:
    if not (l2 > 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be a positive number (it keeps unbeaten systems finite), got {l2!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")


def fit_bt(
    votes: pd.DataFrame,
    *,
    l2: float = DEFAULT_L2,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
) -> dict[str, float]:
    """Bradley–Terry rating of every system, best first (see the module docstring for the model).

    ``votes`` needs columns ``model_a`` (left system), ``model_b`` (right system) and ``outcome``
    (``a``/``b``/``tie``/``both_bad``, or ``left``/``right``). Empty votes give ``{}``.
    ``anchor`` pins that system at ``init_rating``; by default the mean rating is ``init_rating``.
    """
    _check_params(l2, scale, base)
    return _point(_design(votes, "fit_bt"), l2, scale, base, init_rating, anchor)


def _point(
    d: _Design, l2: float, scale: float, base: float, init_rating: float, anchor: str | None
) -> dict[str, float]:
    """Full-data ratings of an already validated design, best first."""
    if not d.systems:
        return {}
    centre = _anchor_index(d, anchor)
    with _one_blas_thread():
        theta = _fit_theta(d, d.w, l2)
    ratings = _to_ratings(theta, centre, scale, base, init_rating)
    order = np.argsort(-ratings, kind="stable")
    return {d.systems[i]: float(ratings[i]) for i in order}


def bootstrap_samples(
    votes: pd.DataFrame,
    rounds: int = 100,
    seed: int | None = 0,
    *,
    cluster: str | None = None,
    l2: float = DEFAULT_L2,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
) -> pd.DataFrame:
    """Ratings refitted on ``rounds`` resamples of the votes: a DataFrame rounds × systems.

    Without ``cluster`` each round draws ``n`` votes with replacement from the ``n`` votes (one
    multinomial draw of the aggregated row counts). With ``cluster`` (a column of ``votes``, e.g.
    ``"prompt"``) each round draws as many clusters as there are, with replacement, and takes
    every vote of each drawn cluster (see the module docstring for why). Every fit starts from
    the full-data solution. Same ``seed`` → same samples. A system that drew no vote in a round
    sits at the prior's centre there. ``frame.attrs`` records ``cluster`` and ``n_clusters``
    (``votes_to_separate`` reads them).
    """
    _check_params(l2, scale, base)
    d, clusters = _design_and_clusters(votes, "bootstrap_samples", cluster)
    return _samples(d, rounds, seed, l2, scale, base, init_rating, anchor, clusters, cluster)


def _samples(
    d: _Design,
    rounds: int,
    seed: int | None,
    l2: float,
    scale: float,
    base: float,
    init_rating: float,
    anchor: str | None,
    clusters: csr_matrix | None = None,
    cluster: str | None = None,
) -> pd.DataFrame:
    """Bootstrap ratings (rounds × systems) of an already validated design."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds!r}")
    if not d.systems:
        frame = pd.DataFrame(np.empty((rounds, 0)), columns=pd.Index([], dtype=object))
        frame.attrs.update(cluster=cluster, n_clusters=0)
        return frame
    centre = _anchor_index(d, anchor)
    rng = np.random.default_rng(seed)
    if clusters is None:
        counts = rng.multinomial(d.n_votes, d.w / d.w.sum(), size=rounds).astype(float)
        n_clusters = d.n_votes
    else:
        n_clusters = clusters.shape[0]
        drawn = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=rounds)
        counts = np.asarray(clusters.T @ drawn.T.astype(float)).T  # rounds × design rows
    with _one_blas_thread():
        theta_full = _fit_theta(d, d.w, l2)
        thetas = _fit_thetas(d, counts, l2, theta_full)
    ratings = _to_ratings(thetas, centre, scale, base, init_rating)
    frame = pd.DataFrame(ratings, columns=d.systems)
    frame.index.name = "round"
    frame.attrs.update(cluster=cluster, n_clusters=int(n_clusters))
    return frame


def ranks_from_intervals(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Chatbot Arena rank: 1 + number of systems whose lower bound is above this one's upper bound."""
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def bootstrap_bt(
    votes: pd.DataFrame,
    rounds: int = 100,
    seed: int | None = 0,
    *,
    level: float = 0.95,
    l2: float = DEFAULT_L2,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    samples: pd.DataFrame | None = None,
    cluster: str | None = None,
) -> pd.DataFrame:
    """Rating table: ``system, rating, lower, upper, rank``, best first.

    ``rating`` is the fit on all votes (:func:`fit_bt`); ``lower``/``upper`` the bootstrap percentile
    interval at ``level``, resampling votes or, with ``cluster``, the clusters of that column
    (:func:`bootstrap_samples`); ``rank`` as in :func:`ranks_from_intervals`. Pass ``samples``
    from :func:`bootstrap_samples` (same fit parameters and cluster) to reuse one bootstrap for
    this table and :func:`votes_to_separate`. Empty votes give an empty table with these columns.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    _check_params(l2, scale, base)
    d, clusters = _design_and_clusters(votes, "bootstrap_bt", cluster)
    point = _point(d, l2, scale, base, init_rating, anchor)
    if not point:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "system" else float) for c in RATING_COLUMNS})
    if samples is None:
        samples = _samples(d, rounds, seed, l2, scale, base, init_rating, anchor, clusters, cluster)
    _check_samples(samples, point, cluster)
    systems = list(point)
    boot = samples[systems].to_numpy(dtype=float)
    alpha = (1.0 - level) / 2.0
    lower = np.quantile(boot, alpha, axis=0)
    upper = np.quantile(boot, 1.0 - alpha, axis=0)
    return pd.DataFrame(
        {
            "system": systems,
            "rating": [point[s] for s in systems],
            "lower": lower,
            "upper": upper,
            "rank": ranks_from_intervals(lower, upper),
        }
    )


def _check_samples(samples: pd.DataFrame, point: dict[str, float], cluster: str | None) -> None:
    missing = [s for s in point if s not in samples.columns]
    if missing:
        raise ValueError(f"bootstrap samples lack system(s) {missing}: they were drawn from other votes")
    drawn = samples.attrs.get("cluster")
    if cluster is not None and "cluster" in samples.attrs and drawn != cluster:
        raise ValueError(
            f"bootstrap samples resampled {drawn or 'single votes'!r}, not clusters of {cluster!r}: "
            "draw them with the same cluster"
        )


def votes_to_separate(
    votes: pd.DataFrame,
    *,
    level: float = 0.95,
    rounds: int = 100,
    seed: int | None = 0,
    l2: float = DEFAULT_L2,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    samples: pd.DataFrame | None = None,
    cluster: str | None = None,
) -> pd.DataFrame:
    """For each pair of neighbours in the rating order, how many more votes would separate them.

    Columns: ``system_a`` (the higher-rated), ``system_b``, ``diff`` (rating of a minus b),
    ``se_diff`` (bootstrap standard deviation of that difference), ``lower``/``upper`` (its bootstrap
    percentile interval at ``level``), ``separated`` (that interval excludes 0), ``n_votes`` (all votes
    so far), ``votes_needed`` (int, ``0`` when already separated, ``None`` when ``diff`` is 0),
    ``n_clusters`` (the independent units the bootstrap resampled: clusters of ``cluster``, or
    votes) and ``clusters_needed`` (further units, same convention as ``votes_needed``).

    The bootstrap is the same as the intervals': pass ``samples`` (their ``attrs`` say which
    cluster they resampled) or ``cluster``. Approximation, stated so the number is read as an
    order of magnitude: the standard error of the difference shrinks like ``1/sqrt(units)``, so
    with ``C`` units resampled and ``z`` the normal quantile of ``level`` the difference clears
    ``z`` standard errors once there are ``C * (z*se_diff/|diff|)**2`` units, i.e.
    ``clusters_needed = ceil(C * r - C)`` with ``r = (z*se_diff/|diff|)**2``, and
    ``votes_needed = ceil(n * r - n)``: the further votes come as further clusters (prompts)
    with as many votes each as so far. More annotators on the *same* prompts narrow the
    interval less, not at all past the prompts' own variation. Without clusters every vote is a
    unit, the two columns agree, and the estimate is the optimistic one of independent votes.
    It takes the observed difference as the true one (optimistic when it is overestimated),
    counts votes over the whole campaign, not only between the two systems, and uses the
    interval of the *difference*, which is narrower than the "non-overlapping intervals" rule
    behind ``rank``, so two systems can be separated here and still share a rank.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    _check_params(l2, scale, base)
    if cluster is None and samples is not None:
        cluster = samples.attrs.get("cluster")
    d, clusters = _design_and_clusters(votes, "votes_to_separate", cluster)
    point = _point(d, l2, scale, base, init_rating, anchor)
    rows: list[dict[str, object]] = []
    if len(point) < 2:
        return pd.DataFrame(rows, columns=SEPARATION_COLUMNS)
    if samples is None:
        samples = _samples(d, rounds, seed, l2, scale, base, init_rating, anchor, clusters, cluster)
    _check_samples(samples, point, cluster)
    n = d.n_votes
    units = clusters.shape[0] if clusters is not None else n
    z = float(norm.ppf(0.5 + level / 2.0))
    alpha = (1.0 - level) / 2.0
    order = list(point)
    for hi, lo in zip(order[:-1], order[1:], strict=True):
        diff = point[hi] - point[lo]
        boot = (samples[hi] - samples[lo]).to_numpy(dtype=float)
        se = float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan
        d_lower, d_upper = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
        separated = bool(d_lower > 0 or d_upper < 0)
        if separated:
            needed: int | None = 0
            units_needed: int | None = 0
        elif abs(diff) < 1e-9 or not math.isfinite(se):
            needed = units_needed = None
        else:
            # at least one more: the interval still covers 0 even if the normal formula says done
            ratio = (z * se / abs(diff)) ** 2
            needed = max(1, math.ceil(n * ratio - n))
            units_needed = max(1, math.ceil(units * ratio - units))
        rows.append(
            {
                "system_a": hi,
                "system_b": lo,
                "diff": diff,
                "se_diff": se,
                "lower": d_lower,
                "upper": d_upper,
                "separated": separated,
                "n_votes": n,
                "votes_needed": needed,
                "n_clusters": units,
                "clusters_needed": units_needed,
            }
        )
    frame = pd.DataFrame(rows, columns=SEPARATION_COLUMNS)
    frame["votes_needed"] = frame["votes_needed"].astype(object)
    frame["clusters_needed"] = frame["clusters_needed"].astype(object)
    return frame
