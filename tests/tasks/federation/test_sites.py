"""The sites file: what a consortium writes, and each mistake named with the file."""

from pathlib import Path

import pytest

from tasks.federation.sites import SitesError, parse_sites

PATH = Path("sites.yaml")
GOOD = """
federation: golub-trio
contrast: {case: AML, control: ALL}
sites:
  - name: site-a
    work_pool: pool-a
    input_path: /srv/a.tsv
    parameters: {workers: 2, sample_sheet: /srv/a.samples.tsv}
  - name: site-b
    work_pool: pool-b
    input_path: /srv/b.tsv
    case: acute myeloid
    control: acute lymphoblastic
"""


def test_a_sites_file_names_each_site_its_pool_input_and_labels():
    federation = parse_sites(GOOD, PATH)
    assert [s.name for s in federation.sites] == ["site-a", "site-b"]
    a, b = federation.sites
    assert a.flow_parameters() == {
        "input_path": "/srv/a.tsv",
        "case": "AML",
        "control": "ALL",
        "workers": 2,
        "sample_sheet": "/srv/a.samples.tsv",
    }
    assert (b.case, b.control, b.work_pool) == ("acute myeloid", "acute lymphoblastic", "pool-b")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("federation: golub-trio", "federation: Golub Trio"), "lowercase letters"),
        (("contrast: {case: AML, control: ALL}", "contrast: {case: AML}"), "case and control"),
        (("name: site-b", "name: site-a"), "unique: site-a"),
        (("    work_pool: pool-b\n", ""), "site site-b has no work_pool"),
        (("{workers: 2,", "{admin_token: x, workers: 2,"), "looks like a secret"),
        (("{workers: 2,", "{n_signatures: 9, workers: 2,"), "set by the coordinator"),
        (("{workers: 2,", "{wrokers: 2,"), "unknown parameters ['wrokers']"),
        (("{workers: 2,", "{workers: -1,"), "greater than or equal to 0"),
        (("    case: acute myeloid", "    colour: red"), "unknown keys ['colour']"),
        (("contrast:", "contrast: [\n"), "not YAML"),
    ],
)
def test_a_mistake_is_named_with_the_file(change, said):
    with pytest.raises(SitesError, match="sites.yaml") as caught:
        parse_sites(GOOD.replace(*change), PATH)
    assert said in str(caught.value)


def test_one_site_is_not_a_federation():
    one = GOOD.split("  - name: site-b")[0]
    with pytest.raises(SitesError, match="at least 2 sites"):
        parse_sites(one, PATH)
