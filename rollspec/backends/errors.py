"""Named errors of the alternative backends: each says what was wrong and what was expected."""

from rollspec.engine.errors import EngineError


class BackendUnavailableError(EngineError):
    """The chosen backend's package is not installed (or does not import) on this machine."""


class UnsupportedDrafterError(EngineError):
    """The backend cannot run this drafter (kind, checkpoint layout or option)."""
