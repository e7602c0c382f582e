"""relay-shell: a governed MCP server for shell and SSH operations on hosts you own."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed package's metadata on first use.

    Looked up lazily: ``importlib.metadata`` costs tens of milliseconds to import, which every
    start (the server's, ``--verify-audit``'s) would otherwise pay before doing anything.
    """
    if name != "__version__":
        raise AttributeError(f"module 'relay_shell' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("relay-shell")
    except PackageNotFoundError:  # running from a source tree without an install
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found
