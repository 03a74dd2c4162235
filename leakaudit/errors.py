"""One exception type per kind of bad input; the CLI turns each into a one-line message, exit 2."""


class LeakauditError(Exception):
    """Base class: anything the user can fix by changing their input or options."""


class DatasetError(LeakauditError):
    """A dataset cannot be read or is unusable (empty, unknown class, bad annotation)."""


class ModelLoadError(LeakauditError):
    """A model file cannot be loaded, or does not match the dataset's classes."""


class ConfigError(LeakauditError):
    """An option or configuration value is invalid."""


class ModelOutputError(LeakauditError):
    """A model produced unusable outputs (NaN/Inf logits, integer or non-tensor outputs)."""


class EngineError(LeakauditError):
    """The chosen compute engine cannot run (its extra is not installed, no cluster reached)."""
