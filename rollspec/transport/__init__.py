"""ZeroMQ data plane: codec, bounded reliable channels, versioned weight broadcast."""
