"""Calibration: fit efficiency parameters to measured kernels, measure this machine, write profiles."""
