"""Offline datasets: D4RL-layout HDF5 I/O (:mod:`.d4rl_hdf5`), scripted behaviour policies
(:mod:`.policies`) and dataset collection (:mod:`.collect`)."""
