"""Helpers shared by every layer (standard library and numpy only): atomic file output, seed
derivation, provenance (versions, JSON conversion), angle wrapping and the bundled-systems folder."""
