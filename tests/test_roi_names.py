"""ROI-name matching (hnseg.dicom.roi_names): real names from Head-Neck-PET-CT, HNSCC and HECKTOR (dicom.md section 1)."""

import json

import pytest

from hnseg.dicom.roi_names import DEFAULT_PATTERNS, DEFAULT_WARN_PATTERNS, classify_roi, match_rois
from hnseg.errors import ConfigError, InputError

GTV_T = [
    # bare and dose-suffixed (HGJ, CHUS, CHUM)
    "GTV", "gtv", "GTV_70Gy", "GTV_7.0GY", "GTV_7.0gy", "GTV_66Gy", "GTV 70 Gy",
    # numbered bare (CHUS GTV#, HGJ "GTV #", pycerr GTV-1, HNSCC GTV_7): GTV-T when alone, see the context tests
    "GTV1", "GTV 1", "GTV-1", "GTV_7",
    # explicit T / P tags
    "GTV-T", "GTV_T", "GTVt", "GTV T", "GTVp", "GTVP", "GTV_P", "GTV-P", "GTV-p", "GTV p", "GTVp2",
    # with dose, side and observer initials (HGJ, CHUS, MDA)
    "GTV_T_70gy", "GTVp G", "GTVp D", "GTVp_KW", "GTVp_YK", "GTVp_YK_SA", "GTVp-YK",
    # the word for primary
    "GTV primaire", "GTV Primaire", "GTV primary_70GY", "GTV primary",
    # PET-drawn primary and named sites
    "gtv pet", "GTV pet", "GTV BOT", "GTV langue", "GTVlarynx",
    # copy numbers in brackets (HECKTOR CHUP names)
    "GTV(2)", "GTVt(2)",
    # white space as found in exports
    "  GTV   primaire ", "GTVp\t",
]  # fmt: skip

GTV_N = [
    "GTVn", "GTV-N", "gtv-n", "GTV_N", "GTV N", "GTV n", "GTVN",
    *[f"GTVn{i}" for i in range(1, 16)], "GTVn01", "GTV_N1", "GTV_N11", "GTV_N_1", "GTVn3_SA",
    "GTV NODE", "GTV Node", "GTV nodes_70GY", "NODAL GTV", "GTV_nd_70gy", "GTVnd",
    "GTV GG", "GTV gg", "GTVgg", "GTV ggs", "GTV GGS", "GTV-gg2", "GTVggIID", "GTVggIIID",
    "GANGLION1", "GANGLION2", "GTNn2", "GVn01", "GTVn(2)",
]  # fmt: skip

NEVER = [
    # derived from a GTV: margins, rings, optimisation and old copies
    "CTV_GTVp+5mm", "PTV_GTV", "zGTV_old", "ring_GTV", "PTV_ring", "GTV+5mm", "GTVp_expanded", "GTV_ring",
    "opt_GTV", "GTV-T_old", "GTVn_old", "GTV_P_ring",
    # combined T and N (warned about, see below) and MR-drawn
    "GTV T et N", "GTV T et N+", "GTV et GG", "GTV t et N", "GTV T irm", "GTVp_MR",
    # T1/T2: MR weighting or T stage
    "GTV T1", "GTV_T2", "GTVt1",
    # not GTVs at all
    "CTV", "PTV70", "BODY", "External", "Parotid_L", "SpinalCord", "Mandible", "", "GTV G",
]  # fmt: skip


@pytest.mark.parametrize("name", GTV_T)
def test_gtv_t_names(name):
    assert classify_roi(name) == "gtv_t"


@pytest.mark.parametrize("name", GTV_N)
def test_gtv_n_names(name):
    assert classify_roi(name) == "gtv_n"


@pytest.mark.parametrize("name", NEVER)
def test_names_that_never_match(name):
    assert classify_roi(name) is None


def test_default_patterns_are_plain_overridable_data():
    assert set(DEFAULT_PATTERNS) == {"gtv_t", "gtv_n"}
    for patterns in (DEFAULT_PATTERNS, DEFAULT_WARN_PATTERNS):
        assert all(isinstance(r, str) for regexes in patterns.values() for r in regexes)
        assert json.loads(json.dumps(patterns)) == patterns  # can live in a YAML/JSON config


def test_default_targets_do_not_overlap():
    for name in GTV_T + GTV_N:
        result = match_rois([name])
        assert not any("both" in w for w in result.warnings), name


@pytest.mark.parametrize("name", ["GTV T et N", "GTV T et N+", "GTV et GG", "GTV t et N"])
def test_combined_t_and_n_is_ignored_with_a_warning_naming_the_roi(name):
    result = match_rois(["BODY", name, "GTVp"])
    assert result.gtv_t == ["GTVp"]
    assert result.gtv_n == []
    assert name in dict(result.ignored)
    assert any(f"'{name}'" in w and "split" in w for w in result.warnings)


def test_mr_drawn_gtv_is_ignored_with_a_warning():
    result = match_rois(["GTV T irm", "GTV n"])
    assert result.gtv_t == [] and result.gtv_n == ["GTV n"]
    assert any("'GTV T irm'" in w and "MRI" in w for w in result.warnings)
    assert any("no GTV-T" in w and "'GTV T irm'" in w for w in result.warnings)


@pytest.mark.parametrize("name", ["GTV T1", "GTV_T2"])
def test_t1_t2_suffix_is_ignored_with_a_warning(name):
    result = match_rois([name, "GTVp"])
    assert result.gtv_t == ["GTVp"]
    assert any(f"'{name}'" in w and "MR weighting" in w for w in result.warnings)


def test_several_gtv_n_are_all_kept_without_warning():
    names = ["BODY", "GTVp", "GTVn1", "GTVn2", "GTVn3_SA", "PTV70"]
    result = match_rois(names)
    assert result.gtv_t == ["GTVp"]
    assert result.gtv_n == ["GTVn1", "GTVn2", "GTVn3_SA"]
    assert result.warnings == []
    assert dict(result.ignored) == {"BODY": "not a GTV", "PTV70": "not a GTV"}


def test_several_gtv_t_are_kept_with_a_warning():
    result = match_rois(["GTVp G", "GTVp D", "GTV GG"])
    assert result.gtv_t == ["GTVp G", "GTVp D"]
    assert result.gtv_n == ["GTV GG"]
    assert any("several GTV-T" in w and "'GTVp G'" in w and "'GTVp D'" in w for w in result.warnings)


def test_single_numbered_gtv_is_the_primary():
    result = match_rois(["GTV1", "BODY"])
    assert result.gtv_t == ["GTV1"]
    assert result.warnings == []


def test_numbered_gtvs_alone_are_merged_with_a_warning():
    result = match_rois(["GTV1", "GTV2", "GTV3", "GTV4"])
    assert result.gtv_t == ["GTV1", "GTV2", "GTV3", "GTV4"]
    assert len(result.warnings) == 1
    assert "numbered" in result.warnings[0] and "nodes" in result.warnings[0]


def test_numbered_gtv_next_to_an_explicit_primary_is_ignored_with_a_warning():
    result = match_rois(["GTVp", "GTV1", "GTVn"])
    assert result.gtv_t == ["GTVp"]
    assert result.gtv_n == ["GTVn"]
    assert "GTV1" in dict(result.ignored)
    assert any("'GTV1'" in w for w in result.warnings)


def test_no_gtv_t_warns_and_lists_gtv_like_names():
    result = match_rois(["CTV_GTVp+5mm", "GTVn", "BODY"])
    assert result.gtv_t == []
    assert any("no GTV-T" in w and "CTV_GTVp+5mm" in w for w in result.warnings)
    assert "margin" in dict(result.ignored)["CTV_GTVp+5mm"]


def test_gtv_n_absent_is_valid():
    result = match_rois(["GTV", "BODY", "Parotid_L"])
    assert result.gtv_t == ["GTV"] and result.gtv_n == [] and result.warnings == []


def test_user_patterns_override_the_defaults_per_target():
    patterns = {"gtv_t": [r"tumou?r(_\d+)?"]}
    assert classify_roi("Tumor", patterns) == "gtv_t"
    assert classify_roi("tumour_2", patterns) == "gtv_t"
    assert classify_roi("GTV", patterns) is None  # the gtv_t defaults are replaced
    assert classify_roi("GTVn1", patterns) == "gtv_n"  # gtv_n keeps its defaults
    assert classify_roi("GTVn1", {"gtv_n": []}) is None  # an empty list: nothing is GTV-N
    # a study that wants the MR-drawn primary
    assert classify_roi("GTV T irm", {"gtv_t": [*DEFAULT_PATTERNS["gtv_t"], r"gtv t irm"]}) == "gtv_t"
    result = match_rois(["Tumor", "GTV", "GTV_N"], patterns)
    assert result.gtv_t == ["Tumor"] and result.gtv_n == ["GTV_N"]


def test_user_warn_patterns_override_the_defaults():
    result = match_rois(["GTVp", "GTV T et N"], warn_patterns={})
    assert not any("GTV T et N" in w for w in result.warnings)


def test_a_name_matching_both_targets_is_ignored_with_a_warning():
    patterns = {"gtv_t": [r"gtv.*"], "gtv_n": [r"gtvn\d*"]}
    assert classify_roi("GTVn1", patterns) is None
    result = match_rois(["GTVn1", "GTVp"], patterns)
    assert result.gtv_t == ["GTVp"]
    assert any("'GTVn1'" in w and "both" in w for w in result.warnings)


@pytest.mark.parametrize(
    "patterns, match",
    [
        ({"gtv_t": ["gtv("]}, "not a valid regular expression"),
        ({"gtv_tumour": ["gtv"]}, "unknown ROI-name pattern target"),
        ({"gtv_t": "gtv"}, "must be a list"),
        ({"gtv_t": [3]}, "is not a string"),
    ],
)
def test_bad_patterns_are_config_errors(patterns, match):
    with pytest.raises(ConfigError, match=match) as info:
        classify_roi("GTV", patterns)
    assert isinstance(info.value, InputError)


def test_match_record_is_json_ready():
    record = match_rois(["GTV", "GTV T et N", "BODY"]).to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["gtv_t"] == ["GTV"]
    assert {"name": "BODY", "reason": "not a GTV"} in record["ignored"]
