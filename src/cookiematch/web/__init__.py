"""HTTP at the edge: small request/response values, RSGI and ASGI adapters, the server."""
