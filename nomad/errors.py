"""nomad's error tree.

Every failure a user can meet is a :class:`NomadError`. Vendor exceptions
(boto3, httpx, sky, psycopg, telegram) are translated at the seam that calls
the vendor (``raise XError(...) from exc``), so the CLI and the bot only ever
see this tree. The CLI maps each class to an exit code in one place
(:mod:`nomad.cli.errors`); the bot maps them to polite replies.

Messages say what failed, on what, and what to do next.
"""

from __future__ import annotations


class NomadError(Exception):
    """Base of every error nomad raises on purpose.

    ``hint`` is the "what to do next" sentence shown after the message.
    ``exit_code`` is what the CLI exits with (see docs/cli.md).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(NomadError):
    """The user asked for something malformed (bad flag value, unknown workflow)."""

    exit_code = 2


class ConfigError(NomadError):
    """nomad.yaml (or an env override) is invalid; the message carries file:line."""

    exit_code = 2


class NotAvailableError(NomadError):
    """A feature needs an extra, a binary or a later release that is not here."""

    exit_code = 3


class StackError(NomadError):
    """The embedded local stack (SeaweedFS + registry) failed to start or answer."""

    exit_code = 4


class StorageError(NomadError):
    """S3 refused or failed (bad keys, bucket missing, endpoint down)."""

    exit_code = 4


class RegistryError(NomadError):
    """The container registry refused or failed (auth, digest, unreachable)."""

    exit_code = 4


class ModelFetchError(NomadError):
    """A model weight could not be fetched or failed its sha256 check."""

    exit_code = 4


class BuildError(NomadError):
    """An image could not be assembled from its inputs."""

    exit_code = 4


class BackendError(NomadError):
    """A launch backend (skypilot, local, ssh) failed."""

    exit_code = 5


class NoCapacityError(BackendError):
    """No offer matched, or the provider had no capacity for any candidate."""


class NoCloudAccessError(BackendError):
    """No cloud is enabled or credentials are missing."""


class QuotaError(BackendError):
    """The provider refused for quota reasons."""


class BudgetError(BackendError):
    """Launching would exceed max $/hour or the daily budget."""


class ClusterNotFoundError(BackendError):
    """No cluster of that name is known."""


class ComfyError(NomadError):
    """ComfyUI refused or failed a prompt."""

    exit_code = 6


class ComfyValidationError(ComfyError):
    """ComfyUI's /prompt answered 400 with node_errors."""


class ComfyExecutionError(ComfyError):
    """A node raised while executing (execution_error)."""


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted."""


class ComfyConnectionError(ComfyError):
    """ComfyUI could not be reached, or it died mid-run."""


class WorkflowError(UsageError):
    """Unknown workflow, bad binding, unknown parameter or out-of-bound value."""


class QueueError(NomadError):
    """The job queue (PostgreSQL or SQLite) failed."""

    exit_code = 7


class LimitExceeded(QueueError):
    """A per-user quota (jobs in flight, jobs per day) refused a new job."""

    def __init__(self, message: str, *, hint: str | None = None, resets_at: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.resets_at = resets_at


class JobNotFound(QueueError):
    """No job with that id."""


class PrivacyError(NomadError):
    """The SOCKS proxy / anon client failed."""

    exit_code = 8
