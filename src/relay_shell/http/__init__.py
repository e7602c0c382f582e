"""HTTP transport: ASGI app, health, metrics, OAuth."""
