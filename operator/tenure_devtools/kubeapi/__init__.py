"""The local Kubernetes API emulator (dev and test tooling, never the operator runtime)."""
