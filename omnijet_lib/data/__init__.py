"""Data: jets and calorimeter showers as arrays, their files, where they come from, and their pre-processing.

Jets: the :class:`~omnijet_lib.data.jets.Jets` container, the HDF5 jet file
(``jet_files``), Pythia 8 + FastJet generation (``pythia_jets``), JetClass ROOT
import (``jetclass``) and the constituent pre-processing (``preprocessing``).
Showers: the :class:`~omnijet_lib.data.showers.Showers` container, the HDF5
shower file in both layouts (``shower_files``), the photon-shower simulator
(``shower_simulation``), the hit pre-processing and voxelisation
(``shower_preprocessing``) and showers as ordered hit sequences for the
direct-token model (``hit_sequences``).  Both file kinds share one writer
(``hdf5``); ``splits`` makes the train/validation/test split every notebook shares.
"""
