"""Data: the Jets container, the HDF5 jet schema, Pythia 8 + FastJet generation, JetClass import, pre-processing."""
