"""dgn: dynamic-scene deblurring with the Depth Guided Network (Li et al., IEEE TIP 2020)."""

__version__ = "0.1.0"
