"""The pipeline tests' Ray session and tiny models, for the security tests that run `rollspec train`."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("pipeline_conftest", Path(__file__).parents[1] / "pipeline" / "conftest.py")
_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pipeline)

ray_session = _pipeline.ray_session
tiny_models = _pipeline.tiny_models
