"""Task logic (tokenize, look up, batch, decode), independent of gRPC."""
