"""The LR sweep's explanation names its val-loss statistic, and lr_curves.png shows that number."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from redheart.sweep.plots import draw_curves  # noqa: E402
from redheart.sweep.score import select  # noqa: E402
from tests.test_sweep import entry  # noqa: E402

# Five epochs: the mean of the last 3 val losses (1.2) is well above the last one (0.95), as in a real sweep.
ENTRIES = [entry(1e-4, [2.0, 1.6, 1.5, 1.15, 0.95]), entry(1e-3, [2.0, 1.8, 1.7, 1.6, 1.5])]


def test_optimal_lr_json_names_the_statistic_it_quotes():
    body = select(ENTRIES, last_k=3).as_json()
    assert body["criteria"]["val_loss"] == "mean val loss over the last 3 epochs"
    assert "mean val loss over the last 3 epochs 1.2000" in body["reason"]
    assert body["scores"][0]["val_loss"] == pytest.approx(1.2)


def test_lr_curves_draw_the_scored_statistic_over_the_epochs_it_averages():
    selection = select(ENTRIES, last_k=3)
    fig, ax = plt.subplots()
    draw_curves(ax, ENTRIES, selection)
    segments = [list(line.get_ydata()) for line in ax.get_lines() if list(line.get_xdata()) == [3, 5]]
    plt.close(fig)
    assert [pytest.approx(1.2), pytest.approx(1.2)] in segments
    assert "mean val loss over the last 3 epochs" in ax.get_title()
