"""``mnp doctor``: a probe job over mnp's own launch, and the analysis of what it found."""
