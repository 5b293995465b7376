"""Segmentation metrics. ``isbi``: the ISBI-2012 EM challenge metrics (pixel, Rand and warping error; V_Rand,
V_Info after border thinning) and the challenge's threshold sweep."""
from .isbi import (
    DEFAULT_THRESHOLDS,
    HIGHER_IS_BETTER,
    METRICS,
    Mismatch,
    classify_mismatches,
    info_f_score,
    is_simple_point,
    pixel_error,
    pixel_mismatch,
    rand_error,
    rand_f_score,
    segment,
    simple_point_lut,
    thin_segment,
    threshold_sweep,
    v_rand_v_info,
    warp_truth,
    warping_error,
    warping_errors,
    warping_mismatches,
)

__all__ = [
    "DEFAULT_THRESHOLDS", "HIGHER_IS_BETTER", "METRICS", "Mismatch",
    "classify_mismatches", "info_f_score", "is_simple_point", "pixel_error", "pixel_mismatch", "rand_error",
    "rand_f_score", "segment", "simple_point_lut", "thin_segment", "threshold_sweep", "v_rand_v_info",
    "warp_truth", "warping_error", "warping_errors", "warping_mismatches",
]
