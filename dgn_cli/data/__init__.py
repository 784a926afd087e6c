"""Training and evaluation data: synthetic depth-aware blur, GOPRO-layout readers."""
