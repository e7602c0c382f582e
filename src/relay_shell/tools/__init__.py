"""The thin MCP surface: one module per tool family, each with register()."""
