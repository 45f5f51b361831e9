"""wheelforge: build, tag, check and publish variant wheels (PEP 825)."""

__version__ = "0.1.0"
