"""Hardware drivers. Each takes its hardware seam as a constructor argument."""
