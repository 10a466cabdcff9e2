r"""Orderings of a dataset's systems so that neighbours in the sequence are similar.

Sample :math:`i` of a dataset is summarised by a feature vector
:math:`f_i \in \mathbb{R}^p` (lowest Fourier modes of its random fields plus its
scalar parameters).  A recycling Krylov solver reuses the most from the previous
solve when consecutive systems are close, so we seek a permutation :math:`\pi`
with a short tour

.. math::  L(\pi) = \sum_{k=1}^{N-1} \lVert f_{\pi_k} - f_{\pi_{k-1}} \rVert_2 .

Methods (``ORDERINGS``):

``"none"``
    the identity, :math:`\pi_k = k`.
``"greedy"``
    SKR Algorithm 1: the nearest-neighbour chain
    :math:`\pi_k = \arg\min_{j \notin \{\pi_0..\pi_{k-1}\}} \lVert f_j - f_{\pi_{k-1}} \rVert`
    from :math:`\pi_0 =` ``start``.  :math:`O(N^2 p / 2)` work, :math:`O(N p)` memory.
``"hilbert"``
    SKR's large-:math:`N` variant (App. E.2.2): PCA to ``dims`` coordinates, sort by
    position along a Hilbert curve, then a greedy chain inside consecutive buckets
    of ``bucket`` systems.  :math:`O(N p \cdot \mathrm{bucket})` work.

All methods are pure functions returning an ``int64`` permutation, like
:func:`scipy.sparse.csgraph.reverse_cuthill_mckee`.

References
----------
.. [1] H. Wang, Z. Hao, J. Wang, Z. Geng, Z. Wang, B. Li, F. Wu, "Accelerating data
   generation for neural operators via Krylov subspace recycling", ICLR 2024
   (SKR; Algorithm 1 and App. E.2.2).  arXiv:2401.09516.
.. [2] J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707, 381-387 (2004).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .registry import Registry

__all__ = ["ORDERINGS", "GREEDY_LIMIT", "hilbert_index", "order_samples", "order_systems", "tour_length"]

OrderingFn = Callable[..., np.ndarray]
ORDERINGS: Registry[OrderingFn] = Registry("ordering")

#: above this many samples a requested ``greedy`` ordering (O(N^2)) runs as ``hilbert``
GREEDY_LIMIT = 20_000
#: samples per call of a family's ``features`` (bounds the temporary feature blocks)
FEATURE_CHUNK = 10_000
_MAX_INDEX_BITS = 62  # Hilbert index fits an int64 as well as a uint64
_MAX_BUCKET = 4096  # a bucket's bucket x bucket score matrix stays <= 128 MiB
_CHUNK_ENTRIES = 1 << 22  # score-matrix entries per batch of buckets (32 MiB in float64)


# ----------------------------------------------------------------------------- public API
def order_systems(features, *, method: str = "greedy", start: int = 0, **options) -> np.ndarray:
    r"""Permutation of the systems so that consecutive feature vectors are close.

    Parameters
    ----------
    features : (N, p) array_like of real, finite floats; N may be 0 or 1.
    method : name in ``ORDERINGS`` (``"none"``, ``"greedy"``, ``"hilbert"``).
    start : first system of the ``"greedy"`` chain, ``0 <= start < N`` (``0`` when
        ``N == 0``).  Checked for every method; ``"none"`` and ``"hilbert"`` ignore it.
    **options : method options.  ``"greedy"``: ``dtype`` (float64 | float32) of the
        distance arithmetic.  ``"hilbert"``: ``dims`` (PCA coordinates, default
        ``min(6, p)``), ``bits`` (per coordinate, ``dims * bits <= 62``), ``bucket``
        (default 256), ``sample`` (PCA subsample size, default 10000), ``seed`` and
        ``dtype``.

    Returns
    -------
    perm : (N,) int64 permutation of ``range(N)``; system ``perm[k]`` is solved k-th.

    Raises
    ------
    ValueError : unknown method (the message lists the valid names), bad ``features``,
        ``start`` or option value (the message names the parameter and its range).

    Examples
    --------
    >>> f = np.array([[0.0], [3.0], [1.0], [2.0]])
    >>> order_systems(f).tolist()
    [0, 2, 3, 1]
    """
    order = ORDERINGS[method]
    X = _as_features(features)
    N = X.shape[0]
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ValueError(f"start must be an integer in [0, {max(N - 1, 0)}], got {start!r}")
    if not 0 <= start < max(N, 1):
        raise ValueError(f"start must be in [0, {max(N - 1, 0)}] for N = {N} systems, got {start}")
    perm = order(X, int(start), **options)
    return np.asarray(perm, dtype=np.int64)


def order_samples(family, spec, seed: int, indices, method: str) -> tuple[np.ndarray, str]:
    r"""Sample ``indices`` of a family reordered so that consecutive samples are similar.

    The one place where samples are ordered (:func:`pdeforge.solvers.generate.generate` and the
    job planner call it): features are the family's ordering features
    (``family.features(spec, seed, chunk)``, float32, computed in chunks of
    ``FEATURE_CHUNK`` without materialising fields); ``greedy`` becomes ``hilbert``
    above ``GREEDY_LIMIT`` samples.  Returns ``(ordered indices, method used)``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    used = "hilbert" if method == "greedy" and len(indices) > GREEDY_LIMIT else method
    ORDERINGS[used]  # unknown names raise here, whatever N is
    if used == "none" or len(indices) < 3:
        return indices, used
    blocks = [np.asarray(family.features(spec, seed, indices[i : i + FEATURE_CHUNK]), dtype=np.float32)
              for i in range(0, len(indices), FEATURE_CHUNK)]
    features = np.vstack(blocks)
    if features.shape[1] == 0:
        return indices, used
    return indices[order_systems(features, method=used)], used


def tour_length(features, perm) -> float:
    r"""Tour length :math:`\sum_k \lVert f_{\pi_{k+1}} - f_{\pi_k} \rVert_2` of the index sequence ``perm``."""
    X = _as_features(features)
    perm = np.asarray(perm)
    if perm.ndim != 1 or not (perm.size == 0 or np.issubdtype(perm.dtype, np.integer)):
        raise ValueError(f"perm must be a 1-D integer array, got shape {perm.shape}, dtype {perm.dtype}")
    if perm.size and (perm.min() < 0 or perm.max() >= X.shape[0]):
        raise ValueError(f"perm entries must be in [0, {X.shape[0] - 1}]")
    total = 0.0
    step = 1 << 16  # bound the temporary to 65536 x p
    for k in range(0, max(perm.size - 1, 0), step):
        i = perm[k : k + step + 1]
        total += float(np.linalg.norm(np.diff(X[i], axis=0), axis=1).sum())
    return total


def hilbert_index(coords, bits: int) -> np.ndarray:
    r"""Index along the ``d``-dimensional Hilbert curve of order ``bits`` (Skilling 2004).

    ``coords`` is an (N, d) array of integers in ``[0, 2**bits)`` with ``d * bits <= 62``.
    The map :math:`\{0..2^b-1\}^d \to \{0..2^{bd}-1\}` is a bijection and cells with
    consecutive indices are grid neighbours (L1 distance 1).  Vectorised over the N
    points: Python loops run only over the bits and the d coordinates.

    Returns an (N,) ``uint64`` array.

    References
    ----------
    .. [1] J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707 (2004),
       ``AxestoTranspose`` followed by bit interleaving of the transpose.
    """
    Q = np.asarray(coords)
    if Q.ndim != 2 or not np.issubdtype(Q.dtype, np.integer):
        raise ValueError(f"coords must be a 2-D integer array, got shape {Q.shape}, dtype {Q.dtype}")
    d = Q.shape[1]
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be an integer >= 1, got {bits!r}")
    if d < 1 or d * bits > _MAX_INDEX_BITS:
        raise ValueError(f"need 1 <= d and d * bits <= {_MAX_INDEX_BITS}, got d = {d}, bits = {bits}")
    if Q.size and (Q.min() < 0 or Q.max() >= (1 << bits)):
        raise ValueError(f"coords must be in [0, {(1 << bits) - 1}] for bits = {bits}")
    return _hilbert_index(Q.astype(np.uint64), int(bits))


# ----------------------------------------------------------------------------- methods
@ORDERINGS.register("none")
def _order_none(X: np.ndarray, start: int) -> np.ndarray:
    """Identity permutation (the baseline SKR calls "nosort")."""
    return np.arange(X.shape[0], dtype=np.int64)


@ORDERINGS.register("greedy")
def _order_greedy(X: np.ndarray, start: int, *, dtype=np.float64) -> np.ndarray:
    r"""SKR Algorithm 1: nearest-neighbour chain from ``start`` (ties -> lowest index).

    With centred features :math:`x_j = f_j - \bar f` and :math:`s_j = \lVert x_j \rVert^2`,
    step k picks :math:`\arg\min_{j\ \mathrm{unvisited}} s_j - 2 x_j^\top x_{\pi_{k-1}}`,
    one matrix-vector product over the unvisited rows.  Visited rows get score
    :math:`+\infty` and are compacted away once they exceed 1/16 of the rows, so the
    total work is about :math:`N^2 p / 2` and no :math:`N \times N` matrix is formed.
    """
    dtype = _check_dtype(dtype)
    N = X.shape[0]
    perm = np.empty(N, dtype=np.int64)
    if N == 0:
        return perm
    Xc = np.asarray(X - X.mean(axis=0), dtype=dtype)  # centring: same distances, less cancellation
    rows = Xc  # unvisited candidates (plus < 1/16 stale visited rows)
    ids = np.arange(N)  # original index of each row of `rows`
    base = np.einsum("ij,ij->i", Xc, Xc)  # s_j, and +inf once visited
    cur = start
    perm[0] = cur
    base[cur] = np.inf
    stale = 1
    for k in range(1, N):
        # Algorithm 1, inner loop: nearest unvisited j to the current system
        score = rows @ (-2.0 * Xc[cur])
        score += base
        j = int(np.argmin(score))
        cur = int(ids[j])
        perm[k] = cur
        base[j] = np.inf
        stale += 1
        if stale * 16 > rows.shape[0] and rows.shape[0] > 64:
            keep = np.isfinite(base)
            rows, base, ids = rows[keep], base[keep], ids[keep]
            stale = 0
    return perm


@ORDERINGS.register("hilbert")
def _order_hilbert(
    X: np.ndarray,
    start: int,
    *,
    dims: int | None = None,
    bits: int | None = None,
    bucket: int = 256,
    sample: int = 10_000,
    seed: int = 0,
    dtype=np.float64,
) -> np.ndarray:
    r"""Hilbert sort of PCA coordinates, then greedy chains inside buckets (SKR App. E.2.2).

    1. PCA: :math:`y_i = V^\top (f_i - \bar f) \in \mathbb{R}^{d}`, V the leading ``dims``
       right singular vectors of the centred features (of a random subsample of ``sample``
       rows when N is larger).
    2. Quantise all coordinates with one common cell size (keeps the PCA geometry),
       :math:`q_i = \lfloor 2^b (y_i - \min y) / \mathrm{span} \rfloor`, and sort by
       Hilbert index (Skilling 2004).
    3. Cut the sorted sequence into consecutive buckets of ``bucket`` systems; in each,
       run Algorithm 1 from the bucket's first (Hilbert-order) system.  All buckets step
       together on batched arrays, so the Python loop has ``bucket`` steps per batch.
    4. Reverse buckets where that shortens the junctions (a 2-state dynamic programme
       over the bucket sequence, exact for this choice).
    """
    N, p = X.shape
    dims = min(6, p) if dims is None else _check_int("dims", dims, 1, min(p, _MAX_INDEX_BITS))
    if bits is None:
        bits = min(_MAX_INDEX_BITS // dims, 32)
    bits = _check_int("bits", bits, 1, _MAX_INDEX_BITS // dims)
    bucket = _check_int("bucket", bucket, 1, _MAX_BUCKET)
    sample = _check_int("sample", sample, 64, None)
    seed = _check_int("seed", seed, 0, None)
    dtype = _check_dtype(dtype)
    if N <= 1:
        return np.arange(N, dtype=np.int64)

    # step 1: PCA (SVD of a subsample when N is large)
    mean = X.mean(axis=0)
    if N > sample:
        rows = np.random.default_rng(seed).choice(N, size=sample, replace=False)
        Z = X[np.sort(rows)] - mean
    else:
        Z = X - mean
    Vt = np.linalg.svd(Z, full_matrices=False)[2][:dims]
    Y = X @ Vt.T - mean @ Vt.T

    # step 2: common-scale quantisation and Hilbert sort
    lo = Y.min(axis=0)
    span = float((Y.max(axis=0) - lo).max())
    top = (1 << bits) - 1
    if span > 0:
        Q = np.clip(np.floor((Y - lo) * ((top + 1) / span)), 0, top).astype(np.uint64)
    else:
        Q = np.zeros(Y.shape, dtype=np.uint64)
    sorted_ids = np.argsort(_hilbert_index(Q, bits), kind="stable")

    # step 3: greedy chains in buckets, a batch of buckets at a time
    chains = []
    n_full = N // bucket
    per_batch = max(1, _CHUNK_ENTRIES // (bucket * bucket))
    for b0 in range(0, n_full, per_batch):
        b1 = min(n_full, b0 + per_batch)
        ids = sorted_ids[b0 * bucket : b1 * bucket].reshape(b1 - b0, bucket)
        chains.append(_bucket_chains(X, mean, ids, dtype))
    if N > n_full * bucket:
        ids = sorted_ids[n_full * bucket :].reshape(1, -1)
        chains.append(_bucket_chains(X, mean, ids, dtype))

    # step 4: orient the buckets
    return _orient(X, chains)


# ----------------------------------------------------------------------------- kernels
def _hilbert_index(X: np.ndarray, bits: int) -> np.ndarray:
    """Skilling's AxestoTranspose on an (N, d) uint64 array, then interleave to an index."""
    d = X.shape[1]
    T = [np.array(X[:, i], dtype=np.uint64) for i in range(d)]  # the "transpose", one array per axis
    zero = np.uint64(0)
    # Skilling: inverse undo excess work
    q = 1 << (bits - 1)
    while q > 1:
        Q, P = np.uint64(q), np.uint64(q - 1)
        T[0] ^= np.where(T[0] & Q, P, zero)  # i = 0: invert low bits where bit q is set
        for i in range(1, d):
            has = (T[i] & Q) != 0
            t = np.where(has, zero, (T[0] ^ T[i]) & P)  # exchange low bits of X[0], X[i]
            T[0] ^= np.where(has, P, t)  # ... or invert X[0]'s low bits
            T[i] ^= t
        q >>= 1
    # Skilling: Gray encode
    for i in range(1, d):
        T[i] ^= T[i - 1]
    t = np.zeros_like(T[0])
    q = 1 << (bits - 1)
    while q > 1:
        t ^= np.where(T[d - 1] & np.uint64(q), np.uint64(q - 1), zero)
        q >>= 1
    for i in range(d):
        T[i] ^= t
    # interleave: index bit (b*d - 1 - (j*d + i)) = bit (bits-1-j) of T[i]
    h = np.zeros_like(T[0])
    one = np.uint64(1)
    for j in range(bits - 1, -1, -1):
        for i in range(d):
            h = (h << one) | ((T[i] >> np.uint64(j)) & one)
    return h


def _bucket_chains(X: np.ndarray, mean: np.ndarray, ids: np.ndarray, dtype) -> np.ndarray:
    r"""Algorithm 1 inside each row of ``ids`` (G buckets of s systems), all buckets at once.

    The score matrix :math:`S_{g,i,j} = s_{g,j} - 2\, x_{g,i}^\top x_{g,j}` comes from one
    batched Gram product; step k gathers row :math:`S_{g,\pi_{k-1}}` of every bucket,
    adds the visited penalty (0 or :math:`+\infty`) and takes the row-wise argmin.
    Returns the (G, s) array of original indices in chain order.
    """
    G, s = ids.shape
    B = np.asarray(X[ids] - mean, dtype=dtype)  # (G, s, p)
    S = B @ B.transpose(0, 2, 1)  # Gram matrices (G, s, s)
    sq = np.einsum("gii->gi", S).copy()
    S *= -2.0
    S += sq[:, None, :]
    penalty = np.zeros((G, s), dtype=dtype)
    local = np.empty((G, s), dtype=np.intp)
    g = np.arange(G)
    cur = np.zeros(G, dtype=np.intp)  # each chain starts at its bucket's first system
    local[:, 0] = cur
    for k in range(1, s):
        penalty[g, cur] = np.inf
        score = S[g, cur]
        score += penalty
        cur = np.argmin(score, axis=1)
        local[:, k] = cur
    return np.take_along_axis(ids, local, axis=1)


def _orient(X: np.ndarray, batches: list[np.ndarray]) -> np.ndarray:
    """Concatenate the bucket chains (rows of ``batches``), reversing some to shorten junctions.

    With o_k in {0, 1} (forward, reversed) for bucket k, the junction k-1 -> k costs
    ||exit(k-1, o_{k-1}) - entry(k, o_k)||; a Viterbi pass over the buckets minimises the sum.
    """
    first = np.concatenate([c[:, 0] for c in batches])
    last = np.concatenate([c[:, -1] for c in batches])
    n = first.size
    flip = np.zeros(n, dtype=bool)
    if n > 1:
        F, L = X[first], X[last]

        def dist(A, B):
            return np.linalg.norm(A - B, axis=1).tolist()

        # c[o][o'] per junction: exit of k-1 is L (o=0) or F (o=1); entry of k is F (o'=0) or L
        c00, c01 = dist(L[:-1], F[1:]), dist(L[:-1], L[1:])
        c10, c11 = dist(F[:-1], F[1:]), dist(F[:-1], L[1:])
        f0 = f1 = 0.0
        back = []
        for k in range(n - 1):
            a0, b0 = f0 + c00[k], f1 + c10[k]
            a1, b1 = f0 + c01[k], f1 + c11[k]
            back.append((a0 > b0, a1 > b1))
            f0, f1 = min(a0, b0), min(a1, b1)
        o = f1 < f0
        for k in range(n - 1, 0, -1):
            flip[k] = o
            o = back[k - 1][o]
        flip[0] = o
    out, k = [], 0
    for c in batches:
        c = c.copy()
        r = flip[k : k + c.shape[0]]
        c[r] = c[r, ::-1]
        out.append(c.ravel())
        k += c.shape[0]
    return np.concatenate(out).astype(np.int64)


# ----------------------------------------------------------------------------- validation
def _as_features(features) -> np.ndarray:
    X = np.asarray(features)
    if np.iscomplexobj(X):
        raise ValueError("features must be real; split complex modes into real and imaginary parts")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"features must be a real numeric array, got dtype {X.dtype}") from None
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"features must be 2-D with shape (N, p), p >= 1; got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features must be finite (found NaN or inf)")
    return X


def _check_int(name: str, value, lo: int, hi: int | None) -> int:
    allowed = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer {allowed}, got {value}")
    return int(value)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype) if dtype is not None else None  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt
