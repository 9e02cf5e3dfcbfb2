"""The HTTP and WebSocket gateway (Litestar): authenticates and relays to services over NATS."""
