"""pyvision-env: Gymnasium environments where a multimodal model reasons by writing Python.

`import pyvision_env` registers the env ids (see `pyvision_env.registration.PRESETS`), after which
`gymnasium.make("PyVisionImage-v0")` works with no download.
"""

from pyvision_env.config import ConfigError, EpisodeLimits, ProtocolOptions
from pyvision_env.env import PyVisionEnv
from pyvision_env.info import EndReason
from pyvision_env.registration import register_all
from pyvision_env.tasks.task import Task, TaskView

__all__ = [
    "ConfigError", "EndReason", "EpisodeLimits", "ProtocolOptions", "PyVisionEnv", "Task",
    "TaskView",
]
__version__ = "0.1.0"

register_all()
