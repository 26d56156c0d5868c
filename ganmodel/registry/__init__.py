"""The model registry and what ships from it: the quality gate (`gate`), registration (`register`),
the pyfunc served by `mlflow models serve` (`serving`, `model_code`) and the `ganmodel` command (`cli`).

Nothing is imported here: the served model loads `serving` without the rest."""
