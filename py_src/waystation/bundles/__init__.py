"""The build side: bundle sources to signed, chunked bundles (builder), their checks, diffs and keys."""

__all__: list[str] = []
