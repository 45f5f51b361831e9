"""The install-time selector: what this machine supports, which wheel it gets, installing it."""
