"""Checks that an exported graph computes what the PyTorch model computes."""

from __future__ import annotations

import numpy as np


class VerificationError(Exception):
    """The exported model disagrees with its reference beyond the tolerance."""


def assert_close(reference: np.ndarray, candidate: np.ndarray, atol: float, what: str) -> float:
    """Raise :class:`VerificationError` giving the max abs difference if it exceeds ``atol``."""
    if reference.shape != candidate.shape:
        raise VerificationError(
            f"{what}: shape {candidate.shape} differs from reference {reference.shape}"
        )
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    if not diff <= atol:
        raise VerificationError(f"{what}: max abs difference {diff:.3g} exceeds tolerance {atol:g}")
    return diff
