from tasks.report.summary import parameter_table, plain_value, run_summary, with_split


def test_run_summary_from_typed_values(params, golub_summary, outcomes):
    main, perm = outcomes
    summary = run_summary(params, golub_summary, main, perm, 4, 12.5, {"numpy": "2.0"})
    overview = summary.overview
    assert overview["contrast"] == "AML (case) vs ALL (control)"
    assert overview["samples"] == "38: 11 AML (case), 27 ALL (control)"
    assert overview["input layout"].startswith("samples as rows")
    assert overview["preparation"] == "11 'AML' and 27 'ALL'"  # the layout line is shown apart
    assert overview["job ids"] == "job-a, job-b, job-c"
    assert (overview["slices retried"], overview["permutation slices retried"]) == (1, 0)
    assert (
        overview["slices failed"] == "none"
        and overview["run time"] == "12.5 s (every flow attempt)"
    )
    assert summary.versions.to_dict(orient="records") == [{"package": "numpy", "version": "2.0"}]


def test_the_samples_line_gives_the_held_out_split(params, golub_summary, outcomes):
    summary = run_summary(params, golub_summary, *outcomes, 4, 1.0, {})
    split = with_split(summary, (list(range(27)), list(range(27, 38))))
    assert split.overview["samples"] == (
        "38: 11 AML (case), 27 ALL (control); 27 searched (discovery), 11 held out for validation"
    )
    assert summary.overview["samples"] == "38: 11 AML (case), 27 ALL (control)"  # not mutated
    assert with_split(summary, None) is summary


def test_rounds_list_why_slices_failed(params, golub_summary, outcomes):
    main, perm = outcomes
    rounds = run_summary(params, golub_summary, main, perm, 4, 1.0, {}).rounds
    assert list(rounds["job"]) == ["main", "main", "permutation"]
    assert list(rounds["round"]) == ["first deployment", "retry 1", "first deployment"]
    assert rounds.loc[0, "why"] == "slice 2: error: RuntimeError: <boom> & co"
    assert list(rounds["slices without a result"]) == [1, 0, 0]


def test_without_a_permutation_job(params, golub_summary, outcomes):
    main, _ = outcomes
    summary = run_summary(params, golub_summary, main, None, 4, 1.0, {})
    assert summary.overview["permutation slices failed"] == "none"
    assert set(summary.rounds["job"]) == {"main"}


def test_parameters_are_plain_words(params):
    table = parameter_table(params).set_index("parameter")
    assert table.loc["classifiers", "value"] == "logistic, svm"
    assert table.loc["case", "value"] == "not set"
    assert table.loc["log2_transform", "value"] == "no"
    assert table.loc["faults", "value"] == "none"
    assert table.loc["dcp.job_name", "value"] == "signature-search"  # nested options flattened
    assert table.loc["n_signatures", "meaning"] == "random signatures to evaluate"
    assert not any(v.startswith(("{", "[")) for v in table["value"])


def test_plain_value():
    assert plain_value({"fail": [1, 2]}) == "fail: 1, 2"
    assert plain_value(600.0) == "600"
    assert plain_value(True) == "yes"
    assert plain_value("") == "not set"
