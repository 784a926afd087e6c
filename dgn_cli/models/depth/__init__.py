"""Monocular depth estimators (Depth Anything V2 Small, MegaDepth hourglass, our small net)."""
