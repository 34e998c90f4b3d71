"""The evaluated methods in the paper's order (DESIGN.md section 4), their labels, the targets and the subsets."""

from __future__ import annotations

from collections.abc import Iterable

METHODS: tuple[str, ...] = (
    "litemedsam_zeroshot_ct",
    "litemedsam_zeroshot_multimodal",
    "litemedsam_finetuned_ct",
    "litemedsam_finetuned_multimodal",
    "nnunet_nobox",
    "nnunet_box",
    "nnunet_nobox_boxmasked",
)
"""The paper's order (zero-shot CT, zero-shot multimodal, fine-tuned CT, fine-tuned multimodal, nnU-Net without
box, nnU-Net with box), then the box-masked no-box prediction (how the authors' notebook computes "with box")."""

LABELS: dict[str, str] = {
    "litemedsam_zeroshot_ct": "LiteMedSAM zero-shot, CT",
    "litemedsam_zeroshot_multimodal": "LiteMedSAM zero-shot, multimodal",
    "litemedsam_finetuned_ct": "LiteMedSAM fine-tuned, CT",
    "litemedsam_finetuned_multimodal": "LiteMedSAM fine-tuned, multimodal",
    "nnunet_nobox": "nnU-Net without box",
    "nnunet_box": "nnU-Net with box (box channel)",
    "nnunet_nobox_boxmasked": "nnU-Net without box, masked by the boxes",
}

SHORT_LABELS: dict[str, str] = {
    "litemedsam_zeroshot_ct": "ZS CT",
    "litemedsam_zeroshot_multimodal": "ZS MM",
    "litemedsam_finetuned_ct": "FT CT",
    "litemedsam_finetuned_multimodal": "FT MM",
    "nnunet_nobox": "nnU-Net",
    "nnunet_box": "nnU-Net\n+box",
    "nnunet_nobox_boxmasked": "nnU-Net\nbox-masked",
}

TARGETS: tuple[str, ...] = ("GTV-T", "GTV-N")
SUBSETS: tuple[str, ...] = ("test", "val")
SUBSET_NAMES = {"test": "test", "val": "validation", "train": "training"}


VARIANT_NAMES = {"zeroshot": ("zero-shot", "ZS"), "finetuned": ("fine-tuned", "FT")}


def _litemedsam(method: str) -> tuple[str, str] | None:
    """(variant, fusion) of a LiteMedSAM method of any fusion (litemedsam_{variant}_{fusion}), else None."""
    parts = method.split("_", 2)
    if len(parts) == 3 and parts[0] == "litemedsam" and parts[1] in VARIANT_NAMES:
        return parts[1], parts[2]
    return None


def ordered(methods: Iterable[str]) -> list[str]:
    """The paper's methods first, in its order, then the LiteMedSAM methods of the study's other fusions (zero-shot,
    then fine-tuned, by fusion), then any others (sorted): the rows and x axis of the report."""
    methods = set(methods)
    others = sorted(methods - set(METHODS))
    litemedsam = sorted((m for m in others if _litemedsam(m)), key=lambda m: (_litemedsam(m)[0] != "zeroshot", m))
    return [m for m in METHODS if m in methods] + litemedsam + [m for m in others if m not in litemedsam]


def label(method: str) -> str:
    if method in LABELS or not _litemedsam(method):
        return LABELS.get(method, method)
    variant, fusion = _litemedsam(method)
    return f"LiteMedSAM {VARIANT_NAMES[variant][0]}, {fusion}"


def short_label(method: str) -> str:
    if method in SHORT_LABELS or not _litemedsam(method):
        return SHORT_LABELS.get(method, method)
    variant, fusion = _litemedsam(method)
    return f"{VARIANT_NAMES[variant][1]} {fusion}"
