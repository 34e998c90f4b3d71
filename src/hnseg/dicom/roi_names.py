"""Which RTSTRUCT ROI is the primary tumour (GTV-T) and which the nodes (GTV-N), from the ROI name.

Names are matched with case-insensitive regular expressions that must match the **whole** name, after trimming and
collapsing runs of white space. A full match is what keeps derived structures out: "CTV_GTVp+5mm", "PTV_GTV",
"ring_GTV", "GTV_ring", "GTVp_expanded", "zGTV_old" or "GTV-T_old" contain a GTV name but are not one.

The patterns are plain data (`DEFAULT_PATTERNS`, a list of regexes per target), so a study can override them in
its config; a target left out of an override keeps its defaults.

Decisions on ambiguous names (real names from Head-Neck-PET-CT, HNSCC and HECKTOR; shared/reference/dicom.md):

- Bare "GTV" (with or without a dose suffix such as "GTV_70Gy", "GTV_7.0GY") is the primary: that is what it
  means in the Québec centres, and a node ROI always carries a node word (N, nd, node, gg, ganglion).
- Numbered bare GTVs ("GTV1", "GTV 2", "GTV-1" as in pycerr, "GTV_7" as in HNSCC) are GTV-T by the patterns,
  but `match_rois` applies a context rule: next to an explicit GTV-T name (e.g. "GTVp") they are ignored with a
  warning (they could be nodes or copies); when several numbered GTVs are the only candidates (CHUS lists such as
  GTV1..GTV4) they are all taken as GTV-T and merged, with a warning that some may be nodes.
- Delineation-modality names: "GTV pet" is the primary (HGJ's official GTV name). "GTV T irm" (drawn on MRI) is not
  used, with a warning: labels live on the CT grid and an MR-drawn contour need not match the CT anatomy. Add it to
  the gtv_t patterns if a study wants it.
- Combined T and N in one ROI ("GTV T et N", "GTV T et N+", "GTV et GG", "GTV t et N") is never used; the match
  result warns, naming the ROI, so that the user can split it.
- Left/right or sub-site primaries ("GTVp G", "GTVp D", "GTV langue" + "GTVlarynx") are all GTV-T, merged with a
  warning; all GTV-N ROIs are merged without one (several nodes are normal).
- "GTV T1", "GTV_T2", "GTVt1": a T1/T2 after the GTV may be an MR weighting or a T stage; not used, with a
  warning. A number after P ("GTVp2") is a second primary part and is GTV-T.
- A copy number in brackets ("GTV(2)", "GTVt(2)", "GTVn(2)", as in HECKTOR's CHUP and Montreal names) is kept.
- Observer initials after an explicit T/N tag ("GTVp_KW", "GTVp_YK_SA", "GTVn3_SA") are kept; "_MR"/"_RM" are not
  initials but a modality. Old copies ("_old") are never taken.
- Typos seen in HECKTOR's MDA and CHUP names, "GTNn2" and "GVn01", are GTV-N.
- A name that matches both targets (only possible with user patterns) is ignored, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hnseg.errors import ConfigError

__all__ = ["DEFAULT_PATTERNS", "DEFAULT_WARN_PATTERNS", "TARGETS", "RoiMatch", "classify_roi", "match_rois"]

TARGETS = ("gtv_t", "gtv_n")

# Building blocks, inlined into the patterns below so that each pattern is a plain, self-contained string.
#   separator            [ _-]?
#   dose suffix          (?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?        _70Gy, _7.0GY, " 70 Gy", _7000cGy
#   side                 (?:[ _-]?[gdlr])?                                    G/D (gauche/droite), L/R
#   observer initials    (?:[_-](?!(?:mr|rm)(?:[_-]|$))[a-z]{2})*             _KW, _YK_SA, -YK (not _MR/_RM)

DEFAULT_PATTERNS: dict[str, list[str]] = {
    "gtv_t": [
        # bare GTV, optionally with a dose or a copy number: GTV, GTV_70Gy, GTV_7.0GY, GTV 70 Gy, GTV(2)
        r"gtv(?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?(?:\(\d\))?",
        # numbered bare GTV: GTV1, GTV 2, GTV-1 (pycerr), GTV_7 (HNSCC); context rule in match_rois
        r"gtv[ _-]?\d{1,2}",
        # explicit T or P tag (a number only after P: "T1"/"T2" may be an MR weighting), side, dose, observer
        # initials, copy number: GTV-T, GTV_T, GTVt, GTVp, GTVP, GTV_P, GTV-p, GTV p, GTVp2, GTVp G, GTVp D,
        # GTV_T_70gy, GTVp_KW, GTVp_YK_SA, GTVp-YK, GTVt(2)
        r"gtv[ _-]?(?:t|p\d{0,2})(?:[ _-]?[gdlr])?(?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?"
        r"(?:[_-](?!(?:mr|rm)(?:[_-]|$))[a-z]{2})*(?:\(\d\))?",
        # the word for primary: GTV primaire, GTV Primaire, GTV primary_70GY, GTV primitif, GTV tumeur
        r"gtv[ _-]?(?:primary|primaire|primitif|primitive|prim|tumou?r|tumeur)\d{0,2}(?:[ _-]?[gdlr])?"
        r"(?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?",
        # primary drawn on PET: gtv pet, GTV pet, GTV TEP
        r"gtv[ _-]?(?:pet|tep)",
        # primary named by its site: GTV BOT (base of tongue), GTV langue, GTVlarynx, GTV oropharynx, GTV amygdale
        r"gtv[ _-]?(?:bot|langue|tongue|larynx|oropharynx|hypopharynx|nasopharynx|pharynx|cavum|amygdale|tonsil"
        r"|glotte|glottis|supraglotte|supraglottis|sinus|parotide?)(?:[ _-]?[gdlr])?",
    ],
    "gtv_n": [
        # explicit N tag or node word, optional number, side, dose, observer initials:
        # GTVn, GTV-N, gtv-n, GTV_N, GTV N, GTV n, GTVn1..GTVn15, GTVn01, GTV_N1, GTV_N_1, GTVn3_SA, GTVnd,
        # GTV_nd_70gy, GTV NODE, GTV Node, GTV nodes_70GY, GTV LN, GTVn(2)
        r"gtv[ _-]?(?:n|nd|ln|nodes?|nodal)(?:[ _-]?\d{1,2})?(?:[ _-]?[gdlr])?"
        r"(?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?(?:[_-](?!(?:mr|rm)(?:[_-]|$))[a-z]{2})*(?:\(\d\))?",
        # node word first: NODAL GTV, Node GTV 2
        r"(?:nodal|nodes?|ln)[ _-]?gtv(?:[ _-]?\d{1,2})?",
        # French "gg" (ganglions), optional number, neck level, side: GTV GG, GTVgg, GTV ggs, GTV-gg2, GTVggIID
        r"gtv[ _-]?ggs?(?:[ _-]?\d{1,2})?(?:[ _-]?(?:vii|vi|v|iv|iii|ii|i)[ab]?)?(?:[ _-]?[gdlr])?"
        r"(?:[ _-]?\d{1,4}(?:[.,]\d{1,2})?[ _-]?c?gy)?",
        # French "ganglion" / "adénopathie": GANGLION1, GTV ganglions, GTV ADP
        r"(?:gtv[ _-]?)?ganglions?(?:[ _-]?\d{1,2})?(?:[ _-]?[gdlr])?",
        r"gtv[ _-]?(?:adp|adenopathies?)(?:[ _-]?\d{1,2})?(?:[ _-]?[gdlr])?",
        # typos in HECKTOR's name lists: GTNn2 (MDA), GVn01 (CHUP)
        r"gtnn\d{0,2}",
        r"gvn\d{0,2}",
    ],
}

# Names that are not used but deserve a warning, with the reason given to the user.
DEFAULT_WARN_PATTERNS: dict[str, list[str]] = {
    # T and N in one ROI: GTV T et N, GTV T et N+, GTV et GG, GTV t et N, GTV T+N, GTV_TN
    "combined_tn": [
        r"gtv[ _-]?(?:[tp]|primaire|primary)?[ _-]?(?:et|and|&|\+)[ _-]?(?:n|gg|ggs|nodes?|ganglions?)\+?",
        r"gtv[ _-]?(?:tn|pn|t\+n|p\+n|t/n|p/n)",
    ],
    # drawn on MRI: GTV T irm, GTV irm, GTVp_MR, GTV MRI
    "mr_delineated": [
        r"gtv[ _-]?(?:[tpn][ _-]?)?(?:irm|mri|mr|rm)(?:[ _-]?[tpn])?",
    ],
    # T1/T2 after a GTV: an MR weighting or a T stage? GTV T1, GTV_T2, GTVt1
    "t1_t2": [
        r"gtv[ _-]?t[ _-]?[12]",
    ],
}

_REASONS = {
    "combined_tn": "holds GTV-T and GTV-N in one ROI; it is not used: split it into a GTV-T ROI and a GTV-N ROI",
    "mr_delineated": (
        "looks drawn on MRI; it is not used because labels are taken on the CT grid (add it to the gtv_t or "
        "gtv_n patterns if the study wants it)"
    ),
    "t1_t2": (
        "ends in T1/T2, which may be an MR weighting or a tumour stage; it is not used: rename it or add it to "
        "the gtv_t patterns"
    ),
}

# A numbered bare GTV (GTV1, GTV 2, GTV-1, GTV_7): a weak GTV-T, see the context rule in match_rois.
NUMBERED_GTV = r"gtv[ _-]?\d{1,2}"


@dataclass
class RoiMatch:
    """The outcome of matching the ROI names of one RTSTRUCT.

    `gtv_t` and `gtv_n` keep the input order (all of a target are merged by the importer); `ignored` gives each
    ignored name with the reason; `warnings` are for the user and name the ROI.
    """

    gtv_t: list[str] = field(default_factory=list)
    gtv_n: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record for import.json."""
        return {
            "gtv_t": list(self.gtv_t),
            "gtv_n": list(self.gtv_n),
            "ignored": [{"name": name, "reason": reason} for name, reason in self.ignored],
            "warnings": list(self.warnings),
        }


def normalise_name(name: str) -> str:
    """Trim and collapse white space (ROI names often carry trailing or doubled spaces)."""
    return re.sub(r"\s+", " ", str(name)).strip()


def classify_roi(name: str, patterns: Mapping[str, list[str]] | None = None) -> str | None:
    """'gtv_t', 'gtv_n' or None for one ROI name (no context; `match_rois` adds the rules across names).

    `patterns` overrides `DEFAULT_PATTERNS` per target (a target left out keeps its defaults). A name matching both
    targets gives None.
    """
    compiled = _compile_targets(_freeze(patterns))
    hits = [target for target in TARGETS if _matches(compiled[target], name)]
    return hits[0] if len(hits) == 1 else None


def match_rois(
    names: Iterable[str],
    patterns: Mapping[str, list[str]] | None = None,
    warn_patterns: Mapping[str, list[str]] | None = None,
) -> RoiMatch:
    """Sort the ROI names of one RTSTRUCT into GTV-T, GTV-N and ignored, with reasons and warnings.

    Rules beyond `classify_roi`: a numbered bare GTV ("GTV1") next to an explicit GTV-T is ignored with a warning;
    several GTV-T ROIs are merged with a warning; combined T+N and MR-drawn GTVs give a warning naming the ROI; no
    GTV-T at all gives a warning listing the GTV-like names that were not taken.
    """
    names = [str(n) for n in names]
    compiled = _compile_targets(_freeze(patterns))
    warn_compiled = _compile_group(_freeze(warn_patterns if warn_patterns is not None else DEFAULT_WARN_PATTERNS))
    numbered = re.compile(NUMBERED_GTV, re.IGNORECASE)
    result = RoiMatch()

    classes: list[str | None] = []
    for name in names:
        hits = [target for target in TARGETS if _matches(compiled[target], name)]
        if len(hits) > 1:
            result.ignored.append((name, "matches both the GTV-T and the GTV-N patterns"))
            result.warnings.append(
                f"ROI '{name}' matches both the GTV-T and the GTV-N patterns and is not used; make the patterns "
                "exclusive or rename the ROI"
            )
            classes.append(None)
            continue
        classes.append(hits[0] if hits else None)
        if not hits:
            reason_key = next((key for key, regexes in warn_compiled.items() if _matches(regexes, name)), None)
            if reason_key is not None:
                reason = _REASONS.get(reason_key, f"matches the '{reason_key}' warning patterns; it is not used")
                result.ignored.append((name, reason))
                result.warnings.append(f"ROI '{name}' {reason}")
            elif "gtv" in name.lower():
                result.ignored.append(
                    (name, "contains GTV but is not a GTV-T or GTV-N name (margin, ring, old copy or other)")
                )
            else:
                result.ignored.append((name, "not a GTV"))

    t_names = [n for n, c in zip(names, classes, strict=True) if c == "gtv_t"]
    weak = [n for n in t_names if numbered.fullmatch(normalise_name(n))]
    strong = [n for n in t_names if n not in weak]
    if strong and weak:
        for name in weak:
            result.ignored.append((name, "numbered GTV next to an explicit GTV-T: it could be a node or a copy"))
            result.warnings.append(
                f"ROI '{name}' is a numbered GTV next to the GTV-T {_quoted(strong)}; it is not used (it could be a "
                "node or a copy); rename it or add it to the patterns if it belongs to GTV-T or GTV-N"
            )
        t_names = strong
    elif len(weak) > 1:
        result.warnings.append(
            f"numbered GTVs {_quoted(weak)} are the only GTV-T candidates and are merged as GTV-T; some may be "
            "nodes: check them, and rename or override the patterns if so"
        )
    result.gtv_t = t_names
    result.gtv_n = [n for n, c in zip(names, classes, strict=True) if c == "gtv_n"]

    if len(result.gtv_t) > 1 and not (len(weak) > 1 and not strong):
        result.warnings.append(f"several GTV-T ROIs {_quoted(result.gtv_t)} are merged into one GTV-T")
    if not result.gtv_t:
        gtv_like = [name for name, _ in result.ignored if "gtv" in name.lower()]
        hint = f"; GTV-like names not taken: {_quoted(gtv_like)}" if gtv_like else ""
        result.warnings.append(
            f"no GTV-T ROI among {len(names)} ROI names{hint}; add the primary's name to the gtv_t patterns or rename it"
        )
    return result


# --- helpers --------------------------------------------------------------------------------------------------------


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _matches(regexes: tuple[re.Pattern[str], ...], name: str) -> bool:
    text = normalise_name(name)
    return any(r.fullmatch(text) for r in regexes)


def _freeze(patterns: Mapping[str, Any] | None) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """Hashable form of a pattern mapping (for the compile cache), checking its shape."""
    if patterns is None:
        return None
    if not isinstance(patterns, Mapping):
        raise ConfigError(f"ROI-name patterns must be a mapping of name to a list of regexes, got {type(patterns)}")
    frozen = []
    for key, given in patterns.items():
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise ConfigError(f"ROI-name patterns '{key}' must be a list of regular expressions, got {given!r}")
        regexes = tuple(given)
        for regex in regexes:
            if not isinstance(regex, str):
                raise ConfigError(f"ROI-name pattern {regex!r} under '{key}' is not a string")
        frozen.append((str(key), regexes))
    return tuple(frozen)


@lru_cache(maxsize=64)
def _compile_group(frozen: tuple[tuple[str, tuple[str, ...]], ...] | None) -> dict[str, tuple[re.Pattern[str], ...]]:
    compiled = {}
    for key, regexes in frozen or ():
        try:
            compiled[key] = tuple(re.compile(r, re.IGNORECASE) for r in regexes)
        except re.error as exc:
            raise ConfigError(f"ROI-name pattern under '{key}' is not a valid regular expression: {exc}") from exc
    return compiled


@lru_cache(maxsize=64)
def _compile_targets(frozen: tuple[tuple[str, tuple[str, ...]], ...] | None) -> dict[str, tuple[re.Pattern[str], ...]]:
    given = dict(frozen or ())
    unknown = sorted(set(given) - set(TARGETS))
    if unknown:
        raise ConfigError(f"unknown ROI-name pattern target(s) {unknown}; use {list(TARGETS)}")
    merged = {target: tuple(given.get(target, DEFAULT_PATTERNS[target])) for target in TARGETS}
    return _compile_group(tuple(merged.items()))
