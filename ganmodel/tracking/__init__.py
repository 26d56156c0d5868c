"""Everything that talks to MLflow: the store (`store`), stage runs and lineage (`runs`), the
training loop's tracker (`tracker`), and the generator as a logged and registered model (`models`).

Nothing is imported here, so a module that needs one of them does not load MLflow for the rest."""
