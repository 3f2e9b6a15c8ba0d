"""The operator console: server-rendered pages at ``/console`` over the same services as
``/api.php`` (no rule is written twice), with their assets served from the package."""

from api.console.pages import install_console

__all__ = ["install_console"]
