"""sweepbook."""
