"""Selection that does not fool itself: search on one half of val, confirm on the other.

Searching epochs per group on one val split overfits that split (a two-group probe on a fine-tuned
encoder: the pair chosen on val gained +0.5 points on val over best single and lost 1.1 on test).
So val is split once, stratified by emotion label with a fixed seed, into a **selection** half, on
which every search runs (best single, greedy soup, greedy crossover), and a **confirmation** half that
no search reads. For every candidate: the selected gain (its val score minus best single's on the
selection half, signed so that positive is better), the confirmed gain (the same on the confirmation
half), and the selection optimism = selected − confirmed gain. A crossover is recommended over best
single only when it beats it on both halves; otherwise best single is.

The analysis' own choices (the "Parameter crossover") read the training's logs of the whole val split,
so its confirmation half is not untouched by its selection: the report says so beside its row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

CROSSOVERS = ("greedy_crossover", "crossover")   # the candidates a recommendation may prefer to best single
SEARCHED_ON_SELECTION_HALF = ("best_single", "greedy_soup", "greedy_crossover")


def val_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the selection and confirmation halves (stratified by label when every class allows it)."""
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if len(labels) < 4:
        raise ValueError(f"val has {len(labels)} records: too few to split into selection and confirmation halves")
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    select, confirm = train_test_split(idx, test_size=0.5, random_state=seed, stratify=stratify)
    return np.sort(select), np.sort(confirm)


def gains(scores: Mapping[str, Mapping[str, float]], mode: str) -> dict[str, dict[str, Any]]:
    """Per candidate: selected gain, confirmed gain, optimism (scores: name -> {"select", "confirm"})."""
    sign = -1.0 if mode == "min" else 1.0
    base = scores["best_single"]
    out = {}
    for name, s in scores.items():
        selected = sign * (s["select"] - base["select"]) + 0.0  # + 0.0: no negative zero in the report
        confirmed = sign * (s["confirm"] - base["confirm"]) + 0.0
        out[name] = {"select": s["select"], "confirm": s["confirm"], "selected_gain": selected,
                     "confirmed_gain": confirmed, "optimism": selected - confirmed,
                     "searched_on_selection_half": name in SEARCHED_ON_SELECTION_HALF}
    return out


def recommend(check: Mapping[str, Mapping[str, Any]], candidates: Sequence[str] = CROSSOVERS) -> dict[str, Any]:
    """The crossover with the largest selected gain among those that beat best single on both halves,
    else best single."""
    winners = [n for n in candidates if n in check and check[n]["selected_gain"] > 0 and check[n]["confirmed_gain"] > 0]
    if not winners:
        tried = ", ".join(f"{n} (selection {check[n]['selected_gain']:+.4f}, "
                          f"confirmation {check[n]['confirmed_gain']:+.4f})" for n in candidates if n in check)
        return {"recommended": "best_single",
                "reason": f"no crossover beat best single on both val halves: {tried or 'none evaluated'}"}
    best = max(winners, key=lambda n: check[n]["selected_gain"])
    return {"recommended": best,
            "reason": f"{best} beat best single on the selection half ({check[best]['selected_gain']:+.4f}) and on "
                      f"the confirmation half ({check[best]['confirmed_gain']:+.4f})"}
