"""Per-row feature contributions of a LightGBM model: the drivers of a fragility score.

Two attributions, both additive in the model's raw (log-odds) score — ``base + sum of the
contributions = logit(probability)`` — and laid out like LightGBM's ``pred_contrib`` output
(one column per feature, then the base):

* ``"path"`` (default): path attributions (Saabas). Walking a row down a tree, each split
  credits its feature with the change of the node value (the node's output were it a leaf)
  from the parent to the child taken; the base is the sum of the roots' values. Vectorised
  over rows (``pred_leaf`` times a leaf x feature credit matrix), it costs a few microseconds a
  row where TreeSHAP took 50-80 here: seconds, not minutes, for 500 instruments x 10 years.
* ``"shap"``: LightGBM's exact TreeSHAP (``pred_contrib=True``).
"""

from __future__ import annotations

from typing import Literal

import lightgbm as lgb
import numpy as np
from scipy import sparse

__all__ = ["contributions", "path_contributions"]

_CHUNK = 65_536  # rows per product: bounds the (rows x trees) leaf-index arrays


def _node_value(node: dict) -> float:
    return float(node["internal_value"] if "internal_value" in node else node["leaf_value"])


def _leaf_credits(booster: lgb.Booster) -> tuple[np.ndarray, np.ndarray, float]:
    """(leaves of all trees x features) credit of each feature on the way to each leaf, each tree's
    first leaf's row, and the base (the sum of the roots' values)."""
    trees = booster.dump_model()["tree_info"]
    first = np.cumsum([0, *(int(t["num_leaves"]) for t in trees)])
    credit = np.zeros((first[-1], booster.num_feature()))
    base = 0.0
    for t, tree in enumerate(trees):
        root = tree["tree_structure"]
        base += _node_value(root)
        stack: list[tuple[dict, np.ndarray]] = [(root, np.zeros(booster.num_feature()))]
        while stack:
            node, path = stack.pop()
            if "split_feature" not in node:
                credit[first[t] + int(node.get("leaf_index", 0))] = path
                continue
            for child in (node["left_child"], node["right_child"]):
                step = path.copy()
                step[int(node["split_feature"])] += _node_value(child) - _node_value(node)
                stack.append((child, step))
    return credit, first[:-1], base


def path_contributions(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Path attributions of ``booster`` at the rows of ``x``: (rows, features + 1), the base last."""
    credit, first, base = _leaf_credits(booster)
    out = np.empty((x.shape[0], credit.shape[1] + 1))
    out[:, -1] = base
    for lo in range(0, x.shape[0], _CHUNK):
        leaf = booster.predict(x[lo:lo + _CHUNK], pred_leaf=True).astype(np.int64).reshape(-1, len(first))
        rows = leaf.shape[0]
        indptr = np.arange(0, leaf.size + 1, len(first))  # one leaf per tree per row
        reached = sparse.csr_matrix((np.ones(leaf.size), (leaf + first).ravel(), indptr), shape=(rows, credit.shape[0]))
        out[lo:lo + rows, :-1] = reached @ credit
    return out


def contributions(booster: lgb.Booster, x: np.ndarray, method: Literal["path", "shap"]) -> np.ndarray:
    """Per-row contributions (rows, features + 1), the base last, by ``method``."""
    if method == "shap":
        if not len(x):  # LightGBM divides by the row count
            return np.zeros((0, booster.num_feature() + 1))
        return np.asarray(booster.predict(x, pred_contrib=True))
    return path_contributions(booster, x)
