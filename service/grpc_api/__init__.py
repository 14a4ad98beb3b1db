"""The gRPC edge: message conversion, error mapping, RPC metrics, health, reflection."""
