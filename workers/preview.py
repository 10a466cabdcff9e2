"""Preview images of one sample: every input channel and the solution side by side, with colour bars.

2-D fields are drawn as images on the unit square (``origin="lower"``, axis 0 horizontal);
3-D fields as their middle slice along the last axis; complex solutions as real part and
modulus; trajectories as the first, middle and last stored frame.  matplotlib (Agg) is
imported only here.
"""

from __future__ import annotations

import io

import numpy as np


def _panels(sample: dict) -> list[tuple[str, np.ndarray]]:
    """(title, 2-D array) for each panel of the figure."""
    panels = []
    for name, field in zip(sample["input_channels"], sample["x"]):
        panels.append((f"x: {name}", _plane(field)))
    y = np.asarray(sample["y"])
    frames = [(None, y)]
    if y.ndim == len(np.shape(sample["x"])) + 1:  # trajectory: (T, C, *grid)
        T = y.shape[0]
        times = sample.get("times")
        frames = [(t, y[t]) for t in sorted({0, T // 2, T - 1})]
        frames = [(f"t = {times[t]:.3g}" if times is not None else f"frame {t}", f) for t, f in frames]
    for label, frame in frames:
        for name, field in zip(sample["output_channels"], frame):
            suffix = f" ({label})" if label else ""
            if np.iscomplexobj(field):
                panels.append((f"y: Re {name}{suffix}", _plane(field.real)))
                panels.append((f"y: |{name}|{suffix}", _plane(np.abs(field))))
            else:
                panels.append((f"y: {name}{suffix}", _plane(field)))
    return panels


def _plane(field: np.ndarray) -> np.ndarray:
    field = np.asarray(field)
    while field.ndim > 2:
        field = field[..., field.shape[-1] // 2]
    if field.ndim == 1:
        return field[None, :]
    return field


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
    for ax, (name, field) in zip(axes.flat, panels):
        image = ax.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis",
                          aspect="auto" if field.shape[0] == 1 else "equal")
        if field.size and np.ptp(field) == 0:  # a constant channel (a scalar parameter): say its value
            name = f"{name} = {field.flat[0]:.4g}"
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
