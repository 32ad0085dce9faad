"""How far a feature lies outside what the known images have in common (the residual of ViM, Wang et al.
2022): its norm after removing the known images' top principal directions. An image of a kind the
dataset never showed keeps more of itself outside those directions than the known images do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Residual:
    mean: np.ndarray  # (d,) centre of the fitted features
    basis: np.ndarray  # (k, d) orthonormal principal directions

    def norms(self, z: np.ndarray) -> np.ndarray:
        c = np.atleast_2d(z).astype(np.float32) - self.mean
        return np.linalg.norm(c - (c @ self.basis.T) @ self.basis, axis=1)


@dataclass
class GroupResiduals:
    """Each group's own residual: a new image's norm outside the top principal directions of one group's
    images, the smallest over the groups. A near unknown shares what all the known images share (so the
    residual above misses it) without lying in any one group's span."""

    means: np.ndarray  # (groups, d)
    bases: np.ndarray  # (groups, k, d) orthonormal rows; zero rows where a group had too few images

    def norms(self, z: np.ndarray) -> np.ndarray:
        return self.per_group(z).min(1)

    def per_group(self, z: np.ndarray) -> np.ndarray:
        """(images, groups): each image's residual against each group."""
        # By products with the stacked means and bases: an (images, groups, d) array of differences
        # would take gigabytes for a large dataset's reference.
        z = np.atleast_2d(z).astype(np.float32)
        groups, k, d = self.bases.shape
        to_mean = (z * z).sum(1)[:, None] - 2 * z @ self.means.T + (self.means * self.means).sum(1)[None]
        offset = np.einsum("gd,gkd->gk", self.means, self.bases)
        inside = (z @ self.bases.reshape(groups * k, d).T).reshape(len(z), groups, k) - offset[None]
        return np.sqrt(np.maximum(to_mean - (inside * inside).sum(-1), 0.0))


class Signal(Protocol):
    def norms(self, z: np.ndarray) -> np.ndarray: ...


@dataclass
class CrossFitted:
    """A residual measured by fold models (cross-fitting, as CV+ does: Barber et al. 2021). Each fold's
    model was fitted without that fold's known images, whose values under it are kept. A new image is
    compared with each known image under the model that did not learn from that image, so both values
    come from the same kind of fit; a model fitted on all images gives new known images smaller residuals
    than the known images' held-out ones, and the limit then rejects fewer than it should."""

    models: list[Signal]
    refs: list[np.ndarray]  # each fold's known images' values under its model, sorted

    def __post_init__(self) -> None:
        self.pooled = np.sort(np.concatenate(self.refs)).astype(np.float32) if self.refs else np.zeros(0)

    def values(self, z: np.ndarray) -> np.ndarray:
        """(images, folds): each row's value under each fold's model."""
        return np.stack([m.norms(z) for m in self.models], 1)

    def rank(self, values: np.ndarray) -> np.ndarray:
        """The share of known images with a smaller value: for `values` from `values()`, each known image
        against the new one under its own fold's model; for a 1-d array of known images' held-out values,
        against the pooled values."""
        n = max(len(self.pooled), 1)
        if values.ndim == 1:
            return np.searchsorted(self.pooled, values, side="left") / n
        return sum(np.searchsorted(r, values[:, k], side="left") for k, r in enumerate(self.refs)) / n
