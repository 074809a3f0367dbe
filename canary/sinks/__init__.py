"""Alert outputs, one module per destination. Each module exposes ``SINK`` (the sink class)."""
