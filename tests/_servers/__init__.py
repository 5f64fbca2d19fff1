"""Local, loopback-only test servers (real HTTP endpoints for real client SDKs)."""
