"""An independent verifier of a finished Darcy dataset: it trusts nothing of the code under test.

It reads the stored objects itself (a folder, or S3 through its own boto3 client), and
recomputes everything from the bytes:

* every file listed in ``manifest.json``: its size and sha256;
* every sample index ``0 .. samples-1`` exactly once over all shards (missing ones are
  *lost*, repeated ones *duplicates*);
* every solution: the true relative residual ``||b - A y|| / ||b||`` of the Darcy system
  rebuilt here from the stored coefficient ``x`` -- cell-centred finite volumes, harmonic
  face means, Dirichlet faces at distance h/2, constant forcing -- within the spec's
  ``rtol``.

Only NumPy, SciPy, h5py and boto3 are used (no ``pdeforge`` import).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp


@dataclass
class Report:
    samples: int = 0
    lost: int = 0
    duplicates: int = 0
    bad_files: list[str] = field(default_factory=list)
    residual_max: float = float("nan")
    rtol: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class FolderReader:
    def __init__(self, root: Path, dataset_id: str) -> None:
        self.base = Path(root) / "datasets" / dataset_id

    def get(self, path: str) -> bytes:
        return (self.base / path).read_bytes()


class S3Reader:
    def __init__(self, client, bucket: str, prefix: str, dataset_id: str) -> None:
        self.client, self.bucket = client, bucket
        self.base = f"{prefix.strip('/')}/datasets/{dataset_id}/".lstrip("/")

    def get(self, path: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.base + path)["Body"].read()


def darcy_operator(a: np.ndarray, h: float) -> sp.csr_matrix:
    """-div(a grad u) on the cell-centred grid of ``a`` (2-D or 3-D), u = 0 on the boundary."""
    shape, d = a.shape, a.ndim
    N = a.size
    index = np.arange(N).reshape(shape)
    diag = np.zeros(shape)
    rows, cols, vals = [], [], []
    for axis in range(d):
        lo = [slice(None)] * d
        hi = [slice(None)] * d
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        a_lo, a_hi = a[tuple(lo)], a[tuple(hi)]
        t = 2.0 * a_lo * a_hi / (a_lo + a_hi) / h**2
        diag[tuple(lo)] += t
        diag[tuple(hi)] += t
        i, j = index[tuple(lo)].ravel(), index[tuple(hi)].ravel()
        rows += [i, j]
        cols += [j, i]
        vals += [-t.ravel(), -t.ravel()]
        for end in (0, -1):
            face = [slice(None)] * d
            face[axis] = end
            diag[tuple(face)] += 2.0 * a[tuple(face)] / h**2
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diag.ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N))


def verify(reader, *, check_residuals: bool = True) -> Report:
    report = Report()
    manifest = json.loads(reader.get("manifest.json"))
    spec = manifest["spec"]
    report.samples = int(manifest["samples"])
    report.rtol = float(spec["solver"]["rtol"])
    if spec["family"] != "darcy" or spec["params"]["forcing"]["kind"] != "constant":
        report.problems.append("the verifier rebuilds constant-forcing Darcy systems only")
        return report
    f_value = float(spec["params"]["forcing"]["value"])
    seen: Counter = Counter()
    worst, where = 0.0, ""
    for entry in manifest["files"]:
        data = reader.get(entry["path"])
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            report.bad_files.append(entry["path"])
            continue
        if "shard" not in entry:
            continue
        with h5py.File(io.BytesIO(data), "r") as h5:
            indices = h5["sample_index"][:]
            seen.update(int(i) for i in indices)
            if not check_residuals:
                continue
            x, y = h5["x"][:], h5["y"][:]
            channel = [c.decode() if isinstance(c, bytes) else str(c) for c in h5["channel_in"][:]].index("a")
            for pos in range(len(indices)):
                a = np.asarray(x[pos, channel], dtype=np.float64)  # x is (S, C_in, *grid)
                A = darcy_operator(a, 1.0 / a.shape[0])
                b = np.full(a.size, f_value)
                u = np.asarray(y[pos], dtype=np.float64).ravel()
                rel = float(np.linalg.norm(b - A @ u) / np.linalg.norm(b))
                if not rel <= worst:
                    worst, where = rel, f"{entry['path']} position {pos} (sample {indices[pos]})"
    report.residual_max = worst
    report.lost = sum(1 for i in range(report.samples) if seen[i] == 0)
    report.duplicates = sum(c - 1 for c in seen.values() if c > 1)
    strays = [i for i in seen if not 0 <= i < report.samples]
    if report.bad_files:
        report.problems.append(f"size or sha256 mismatch: {report.bad_files}")
    if report.lost or report.duplicates or strays:
        report.problems.append(f"{report.lost} samples lost, {report.duplicates} duplicated, stray indices {strays}")
    if check_residuals and not worst <= report.rtol * 1.01:
        report.problems.append(f"residual {worst:.3e} above rtol {report.rtol:.1e} in {where}")
    return report
