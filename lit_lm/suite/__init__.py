"""One checkpoint, many tasks, both arms: ``python -m lit_lm suite``.

:mod:`lit_lm.suite.recipes` holds one small recipe per fine-tuning task (data files, task class, budget);
:mod:`lit_lm.suite.runner` fine-tunes a checkpoint on each task and seed, pretrained and from scratch, and records
each run's test score; :mod:`lit_lm.suite.report` turns the records into the table and figure.
"""

from lit_lm.suite.recipes import RECIPES, TaskRecipe, load_recipes, read_recipes, run_config
from lit_lm.suite.report import plot, table, write_report
from lit_lm.suite.runner import RecordsFile, run_suite

__all__ = ["RECIPES", "RecordsFile", "TaskRecipe", "load_recipes", "plot", "read_recipes", "run_config", "run_suite",
           "table", "write_report"]
