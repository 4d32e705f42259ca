"""Check an exported model against the Keras model it came from, before it is written.

Tolerances are per variant (in fer_export.formats), because each quantization scheme has its own
expected error: fp32 must match to rounding, fp16 to half-precision weights, and the integer variants
to their 8-bit grid.
A check compares probabilities (mean absolute difference) and top-1 predictions (agreement rate); a
top-1 flip only counts where the float model was clear about its answer, because quantization
noise legitimately flips near-ties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    mean_abs: float  # mean |p_tflite - p_keras| over all probabilities
    agreement: float  # minimal top-1 agreement on the faces the float model is clear about
    margin: float = 0.1  # "clear": the float model's top-1 beats its runner-up by at least this much


@dataclass
class Check:
    passed: bool
    samples: int
    mean_abs_diff: float
    max_abs_diff: float
    agreement: float  # top-1 agreement on all checked faces
    clear_agreement: float  # top-1 agreement on the faces the float model is clear about
    clear_samples: int
    tolerance: Tolerance

    def summary(self) -> str:
        return (
            f"mean |dp| {self.mean_abs_diff:.2e} (max {self.max_abs_diff:.2e}), "
            f"top-1 agreement {self.agreement:.1%} "
            f"({self.clear_agreement:.1%} on {self.clear_samples} clear faces); "
            f"tolerance mean |dp| <= {self.tolerance.mean_abs:g}, agreement >= {self.tolerance.agreement:.0%}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


class VerificationError(RuntimeError):
    """The exported model disagrees with the Keras model beyond its variant's tolerance."""

    def __init__(self, variant: str, check: Check):
        super().__init__(f"{variant} model disagrees with the Keras model: {check.summary()}")
        self.variant, self.check = variant, check


def compare(reference: np.ndarray, exported: np.ndarray, tolerance: Tolerance) -> Check:
    """Compare probabilities (N, classes) of the Keras model and of the exported model."""
    if reference.shape != exported.shape:
        raise ValueError(f"output shapes differ: Keras {reference.shape}, TFLite {exported.shape}")
    diff = np.abs(reference.astype(np.float64) - exported.astype(np.float64))
    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    ranked = np.sort(reference, axis=1)
    clear = (ranked[:, -1] - ranked[:, -2]) >= tolerance.margin
    agreement = float((ref_top == exp_top).mean())
    clear_agreement = float((ref_top[clear] == exp_top[clear]).mean()) if clear.any() else 1.0
    passed = float(diff.mean()) <= tolerance.mean_abs and clear_agreement >= tolerance.agreement
    return Check(
        passed=bool(passed),
        samples=int(len(reference)),
        mean_abs_diff=float(diff.mean()),
        max_abs_diff=float(diff.max()),
        agreement=agreement,
        clear_agreement=clear_agreement,
        clear_samples=int(clear.sum()),
        tolerance=tolerance,
    )
