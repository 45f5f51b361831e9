"""Publishing: check a release set, write a static variant index, serve it, upload."""
