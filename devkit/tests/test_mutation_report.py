from devkit.mutation import function_of, module_of, parse_results, render_report, scores

RESULTS = """\
    rotator.tokens.x_new_alias__mutmut_1: killed
    rotator.tokens.x_new_alias__mutmut_2: survived
    rotator.config.xǁ_Readerǁinteger__mutmut_5: timeout
    rotator.config.x_log_level_from__mutmut_1: no tests
    rotator.config.x_log_level_from__mutmut_2: no tests
"""


def test_mutation_results_are_parsed_per_mutant():
    statuses = parse_results("Running...\n" + RESULTS)
    assert len(statuses) == 5
    assert statuses["rotator.config.xǁ_Readerǁinteger__mutmut_5"] == "timeout"


def test_mutation_names_split_into_module_and_function():
    assert module_of("rotator.config.xǁ_Readerǁinteger__mutmut_5") == "rotator.config"
    assert function_of("rotator.config.xǁ_Readerǁinteger__mutmut_5") == "_Reader.integer"
    assert function_of("rotator.tokens.x_new_alias__mutmut_12") == "new_alias"


def test_mutation_score_counts_timeouts_as_killed_and_unreached_as_not():
    by_module = {m.module: m for m in scores(parse_results(RESULTS))}
    assert by_module["rotator.tokens"].score == 50.0
    assert by_module["rotator.config"].killed == 1
    assert round(by_module["rotator.config"].score, 1) == 33.3


def test_mutation_report_shows_survivor_diffs_and_unreached_functions():
    statuses = parse_results(RESULTS)
    report = render_report(scores(statuses), {"rotator.tokens.x_new_alias__mutmut_2": "-UTC\n+None"})
    assert "| `rotator.tokens` | 2 | 1 | 1 | 0 | 50.0 % |" in report
    assert "+None" in report
    assert "- `log_level_from`: 2 mutants" in report
    assert "x_new_alias__mutmut_1`" not in report
