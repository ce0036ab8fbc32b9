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
