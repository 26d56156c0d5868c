"""The generator's pyfunc, logged as code (MLflow models-from-code).

MLflow executes this file when it loads the model, so loading a served generator never
unpickles an object: it imports `GeneratorModel` and reads the weights file in `load_context`.
It is a model definition for MLflow, not a module of the package: nothing imports it.
"""

import mlflow

from ganmodel.registry.serving import GeneratorModel

mlflow.models.set_model(GeneratorModel())
