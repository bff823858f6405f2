"""Models on padded jet constituents: backbone, heads and the classifiers of the quality tests."""
