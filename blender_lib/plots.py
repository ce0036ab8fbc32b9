"""Seaborn figures used by the chapters (each returns its Axes; notebooks only show them)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def heatmap(table: pd.DataFrame, *, title: str, fmt: str = ".2f", cmap: str = "vlag", center: float | None = 0.5):
    """An annotated heatmap of a square model x model table."""
    size = max(4.0, 0.75 * len(table) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    sns.heatmap(table, annot=True, fmt=fmt, cmap=cmap, center=center, square=True, cbar=False, ax=ax)
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel("")
    fig.tight_layout()
    return ax


def bar(series: pd.Series, *, title: str, xlabel: str, color: str = "C0"):
    """A horizontal bar chart of one value per model, largest first."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(series) + 1.2))
    ordered = series.sort_values()
    ax.barh(ordered.index, ordered.values, color=color)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for y, value in enumerate(ordered.values):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=9)
    fig.tight_layout()
    return ax


def tradeoff(curve: pd.DataFrame, *, title: str, ylabel: str, y: str = "quality"):
    """Top-1 quality against model passes: a line per budgeted aggregation, one marker for bubble."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines = curve[curve["aggregation"] != "bubble"]
    sns.lineplot(data=lines, x="model passes", y=y, hue="aggregation", marker="o", ax=ax)
    for _, row in curve[curve["aggregation"] == "bubble"].iterrows():
        ax.scatter([row["model passes"]], [row[y]], marker="*", s=180, color="C3", zorder=3, label="bubble")
    ax.set_title(title)
    ax.set_xlabel("model passes per example (each compared pair runs in both orders)")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    return ax


def learning_curve(curve: pd.DataFrame, *, x: str, y: str, hue: str, title: str, reference: dict[str, float] | None = None):
    """A metric against training progress (log x), one line per ``hue``; ``reference`` draws labelled
    horizontal lines (a baseline that needs no training)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=curve, x=x, y=y, hue=hue, marker="o", ax=ax)
    for n, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{n + 3}", label=label)
    ax.set_xscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return ax


def scatter(table: pd.DataFrame, *, x: str, y: str, title: str, hue: str | None = None):
    """One point per row with a least-squares line over all of them (the trend the text quotes)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.regplot(data=table, x=x, y=y, scatter=False, ci=None, color="0.4", line_kws={"lw": 1}, ax=ax)
    sns.scatterplot(data=table, x=x, y=y, hue=hue, ax=ax, s=30)
    ax.set_title(title)
    if hue is not None:
        ax.legend(fontsize=8, title=hue, title_fontsize=8)
    fig.tight_layout()
    return ax


# Where a point's label may go, in order of preference: (offset in points, horizontal, vertical alignment).
_LABEL_SPOTS = [((8, 0), "left", "center"), ((-8, 0), "right", "center"), ((0, 7), "center", "bottom"),
                ((0, -7), "center", "top")] + [((8, dy), "left", "center") for dy in (-12, 12, -24, 24, -36, 36)]


def _spread_labels(ax, notes: list) -> None:
    """Give each annotation the first spot (see ``_LABEL_SPOTS``) where it overlaps no marker, no label
    placed before it and stays inside the axes; the first spot if none is free."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [ax.transData.transform(n.xy) for n in notes]
    done: list = []

    def free(box) -> bool:
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        on_marker = any(box.x0 - 5 <= x <= box.x1 + 5 and box.y0 - 5 <= y <= box.y1 + 5 for x, y in markers)
        return inside and not on_marker and not any(box.overlaps(other) for other in done)

    for note in sorted(notes, key=lambda n: -n.xy[1]):
        for offset, ha, va in _LABEL_SPOTS:
            note.set_position(offset)
            note.set_ha(ha)
            note.set_va(va)
            if free(note.get_window_extent(renderer)):
                break
        else:
            offset, ha, va = _LABEL_SPOTS[0]
            note.set_position(offset)
            note.set_ha(ha)
            note.set_va(va)
        done.append(note.get_window_extent(renderer))


def cost_quality(points: pd.DataFrame, *, quality: str, title: str,
                 costs: tuple[str, ...] = ("model calls / query", "generated tokens / query"),
                 kind: str = "kind", label: str = "label", log_x: tuple[bool, ...] = (True, False)):
    """Quality against cost, one panel per cost column, one point per method (rows of ``points``),
    coloured by ``kind`` and named by ``label`` (or the index); methods at the same place share one
    stacked annotation. Returns the panels' Axes."""
    if len(log_x) != len(costs):
        raise ValueError(f"log_x needs one flag per cost column {costs}, got {log_x}")
    fig, axes = plt.subplots(1, len(costs), figsize=(6.2 * len(costs), 4.8), sharey=True, squeeze=False)
    kinds = list(dict.fromkeys(points[kind]))
    palette = dict(zip(kinds, sns.color_palette(n_colors=len(kinds)), strict=True))
    markers = dict(zip(kinds, "osD^vP*X", strict=False))
    names = points[label] if label in points.columns else pd.Series(points.index, index=points.index)
    span = float(points[quality].max() - points[quality].min()) or 1.0
    notes: dict = {}
    for ax, cost, log in zip(axes[0], costs, log_x, strict=True):
        for k in kinds:
            part = points[points[kind] == k]
            ax.scatter(part[cost], part[quality], s=70, color=palette[k], marker=markers.get(k, "o"), label=k,
                       zorder=3)
        placed: dict[tuple[float, float], tuple[float, float, list[str]]] = {}
        for (_, row), name in zip(points.iterrows(), names, strict=True):
            x, y = float(row[cost]), float(row[quality])
            placed.setdefault((round(x, 6), round(y / span, 2)), (x, y, []))[2].append(str(name))
        notes[ax] = [ax.annotate("\n".join(group), (x, y), textcoords="offset points", xytext=(8, 0), fontsize=8,
                                 va="center") for x, y, group in placed.values()]
        if log:
            ax.set_xscale("log")
            ticks: list[float] = []
            for v in sorted({float(v) for v in points[cost] if v > 0}):
                if not ticks or v / ticks[-1] > 1.25:  # a label per cost level, unless it would collide
                    ticks.append(v)
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.minorticks_off()
        ax.set_xlabel(cost + (" (log scale)" if log else ""))
        ax.margins(x=0.2, y=0.1)
    axes[0][0].set_ylabel(quality)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.canvas.draw()
    for ax, placed_notes in notes.items():
        _spread_labels(ax, placed_notes)
    return axes[0]


def routing_curves(curves: pd.DataFrame, *, x: str, y: str, hue: str, col: str, title: str):
    """One panel per ``col`` value (a dataset), one line per ``hue`` (a router); panels keep their own y."""
    grid = sns.relplot(data=curves, x=x, y=y, hue=hue, col=col, col_wrap=2, kind="line", marker="o", height=3.4, aspect=1.1,
                       facet_kws={"sharey": False})
    grid.figure.suptitle(title, y=1.03)
    return grid.axes.flat[0]


def hulls(points: pd.DataFrame, hull_points: pd.DataFrame, *, title: str, xlabel: str, ylabel: str):
    """Cost-quality points of each router (dots) and the non-decreasing convex hull of each (lines)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    sns.scatterplot(data=points, x="cost", y="quality", hue="router", ax=ax, s=25, alpha=0.6, legend=False)
    sns.lineplot(data=hull_points, x="cost", y="quality", hue="router", ax=ax, sort=False, lw=1.5, estimator=None)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return ax
