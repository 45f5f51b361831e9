"""The build stage: toolchains, the build cache, the PEP 517 backend and the orchestrator."""
