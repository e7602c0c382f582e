"""relay-shell: a governed MCP server for shell and SSH operations on hosts you own."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("relay-shell")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
