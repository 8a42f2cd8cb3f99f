"""RL algorithm pieces without I/O: losses, advantages, built-in tasks and rewards."""
