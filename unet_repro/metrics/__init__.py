"""Segmentation metrics. ``isbi``: the ISBI-2012 EM challenge metrics (pixel, Rand and warping error, the full
topological error; V_Rand, V_Info after border thinning) and the challenge's threshold sweep, which skips
degenerate thresholds. ``segmentation``: per-image overlap metrics for binary masks (IoU, Dice, pixel accuracy,
sensitivity, specificity, ISIC 2018 thresholded Jaccard, COCO-style IoU threshold sweep) and a per-image report with
mean and standard deviation. ``objects``: object-level scores of instance label images (IoU of every object pair, the
one-to-one matching at an IoU threshold, precision, recall, F1 and the Cellpose / StarDist "average precision"
TP / (TP + FP + FN), per image and pooled). ``classes``: per-class IoU and Dice of K-class masks, per image and
pooled."""
from .classes import CLASS_MEANS, check_class_mask, class_confusion_matrix, class_report, class_scores
from .isbi import (
    DEFAULT_THRESHOLDS,
    HIGHER_IS_BETTER,
    METRICS,
    Mismatch,
    classify_mismatches,
    degenerate_thresholds,
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
    topological_error,
    topological_errors,
    v_rand_v_info,
    warp_truth,
    warping_error,
    warping_errors,
    warping_mismatches,
)
from .objects import (
    OBJECT_RATIOS,
    ObjectCounts,
    ObjectMatching,
    ObjectOverlap,
    check_label_image,
    match_objects,
    match_overlap,
    object_overlap,
    object_report,
    object_scores,
)
from .segmentation import (
    COCO_IOU_THRESHOLDS,
    ISIC_JACCARD_THRESHOLD,
    SEGMENTATION_METRICS,
    Confusion,
    IoUSweep,
    confusion,
    dice,
    iou,
    iou_threshold_sweep,
    pixel_accuracy,
    pooled_scores,
    segmentation_report,
    sensitivity,
    specificity,
    thresholded_jaccard,
    thresholded_jaccard_per_image,
)

__all__ = [
    "DEFAULT_THRESHOLDS", "HIGHER_IS_BETTER", "METRICS", "Mismatch",
    "classify_mismatches", "degenerate_thresholds", "info_f_score", "is_simple_point", "pixel_error",
    "pixel_mismatch", "rand_error", "rand_f_score", "segment", "simple_point_lut", "thin_segment", "threshold_sweep",
    "topological_error", "topological_errors", "v_rand_v_info", "warp_truth", "warping_error", "warping_errors",
    "warping_mismatches",
    "COCO_IOU_THRESHOLDS", "ISIC_JACCARD_THRESHOLD", "SEGMENTATION_METRICS", "Confusion", "IoUSweep", "confusion",
    "dice", "iou", "iou_threshold_sweep", "pixel_accuracy", "pooled_scores", "segmentation_report", "sensitivity",
    "specificity", "thresholded_jaccard", "thresholded_jaccard_per_image",
    "OBJECT_RATIOS", "ObjectCounts", "ObjectMatching", "ObjectOverlap", "check_label_image", "match_objects",
    "match_overlap", "object_overlap", "object_report", "object_scores",
    "CLASS_MEANS", "check_class_mask", "class_confusion_matrix", "class_report", "class_scores",
]
