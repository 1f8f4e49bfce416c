"""The project's error hierarchy: every error a user can see is one of these.

Each carries a one-line message meant for a person and the exit code the CLI uses.
"""

from __future__ import annotations


class ComfyPodError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class SettingsError(ComfyPodError):
    """A bad environment variable or setting; names the variable and what is allowed."""

    exit_code = 2


class WorkspaceError(ComfyPodError):
    """The workspace cannot be prepared (not writable, full, a file where a folder should be)."""

    exit_code = 3


class PathError(ComfyPodError):
    """A path from a user or the catalog escapes its base folder or is otherwise unsafe."""

    exit_code = 4


class ServiceError(ComfyPodError):
    """supervisord could not be reached or refused an action."""

    exit_code = 5


class CatalogError(ComfyPodError):
    """The presets catalog cannot be read, parsed or validated."""

    exit_code = 6


class DownloadError(ComfyPodError):
    """A file could not be fetched or verified."""

    exit_code = 7


class ComfyUIError(ComfyPodError):
    """ComfyUI answered with an error or could not be reached."""

    exit_code = 8


class WorkflowError(ComfyPodError):
    """A workflow file cannot be read or converted."""

    exit_code = 9


class NodeError(ComfyPodError):
    """A custom node cannot be installed, removed or imported."""

    exit_code = 10


class BuildError(ComfyPodError):
    """An image build or GPU check cannot go on (unknown CUDA version, unusable driver)."""

    exit_code = 11
