"""Preview images of one sample: every input channel and the solution side by side, with colour bars.

2-D fields are drawn as images on the unit square (``origin="lower"``, axis 0 horizontal);
3-D fields as their middle slice along the last axis; 1-D fields as curves; complex solutions
as real part and modulus; trajectories as the first, middle and last stored frame (1-D
trajectories as one space-time image).  matplotlib (Agg) is
imported only here.
"""

from __future__ import annotations

import io

import numpy as np


def _panels(sample: dict) -> list[dict]:
    """One dict per panel: ``title``, ``data`` and ``kind`` -- ``image`` (a 2-D array on the unit square),
    ``line`` (a 1-D field) or ``spacetime`` (a 1-D trajectory as a (T, n) image, ``extent`` in x and t)."""
    panels = []
    one_d = np.ndim(sample["x"]) == 2  # (C, n)
    for name, field in zip(sample["input_channels"], sample["x"]):
        panels.append(_panel(f"x: {name}", field))
    y = np.asarray(sample["y"])
    frames = [(None, y)]
    if y.ndim == len(np.shape(sample["x"])) + 1:  # trajectory: (T, C, *grid)
        T = y.shape[0]
        times = sample.get("times")
        if one_d:  # the whole trajectory as one space-time image per channel
            t0, t1 = (float(times[0]), float(times[-1])) if times is not None else (0.0, float(T - 1))
            return panels + [{"title": f"y: {name}(x, t)", "data": y[:, c], "kind": "spacetime",
                              "extent": (0.0, 1.0, t0, t1)} for c, name in enumerate(sample["output_channels"])]
        frames = [(t, y[t]) for t in sorted({0, T // 2, T - 1})]
        frames = [(f"t = {times[t]:.3g}" if times is not None else f"frame {t}", f) for t, f in frames]
    for label, frame in frames:
        for name, field in zip(sample["output_channels"], frame):
            suffix = f" ({label})" if label else ""
            if np.iscomplexobj(field):
                panels.append(_panel(f"y: Re {name}{suffix}", field.real))
                panels.append(_panel(f"y: |{name}|{suffix}", np.abs(field)))
            else:
                panels.append(_panel(f"y: {name}{suffix}", field))
    return panels


def _panel(title: str, field) -> dict:
    field = np.asarray(field)
    while field.ndim > 2:
        field = field[..., field.shape[-1] // 2]
    return {"title": title, "data": field, "kind": "line" if field.ndim == 1 else "image"}


def render_png(sample: dict, *, title: str = "", dpi: int = 80) -> bytes:
    """A PNG of ``sample`` (the dict :func:`pdeforge.workers.dataset.read_sample` returns)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = _panels(sample)
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows + (0.4 if title else 0)),
                             squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes.flat, panels):
        name, field = panel["title"], panel["data"]
        if field.size and np.ptp(field) == 0:  # a constant channel (a scalar parameter): say its value
            name = f"{name} = {field.flat[0]:.4g}"
        if panel["kind"] == "line":
            ax.plot((np.arange(field.size) + 0.5) / field.size if "grid_points" not in sample
                    else sample["grid_points"], field, lw=1.0)
            ax.set_xlim(0, 1)
        elif panel["kind"] == "spacetime":
            image = ax.imshow(field, origin="lower", extent=panel["extent"], cmap="viridis", aspect="auto")
            ax.set_xlabel("x", fontsize=8)
            ax.set_ylabel("t", fontsize=8)
            fig.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
        else:
            image = ax.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", aspect="equal")
            fig.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
