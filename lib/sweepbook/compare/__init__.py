"""The read side: runs of an experiment or a sweep side by side (runs), their figures (plots),
a search's own figures (search), two runs' differences (diff), an HTML report (report) and
promotion in the Model Registry (registry).

It reads the store through `sweepbook.tracking` alone, never the sweep or executor side.
"""
from sweepbook.compare.runs import (LATEST, ComparisonError, Scope, best_run, direction_for,
                                    finished_ranked, load_model, load_runs, metric_histories,
                                    metric_names, ranked, read_artifact, resolve_scope,
                                    run_config, scope_for, summary_table, swept_params)
from sweepbook.compare.search import SEARCH_FIGURES, search_figures
from sweepbook.compare.diff import RunDiff, diff  # compare.diff: the function, not its module

__all__ = ["LATEST", "ComparisonError", "RunDiff", "SEARCH_FIGURES", "Scope", "best_run",
           "diff", "direction_for", "finished_ranked", "load_model", "load_runs",
           "metric_histories", "metric_names", "ranked", "read_artifact", "resolve_scope",
           "run_config", "scope_for", "search_figures", "summary_table", "swept_params"]
