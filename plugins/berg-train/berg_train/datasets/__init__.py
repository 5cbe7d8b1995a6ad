"""Readers of the published fMRI datasets, in the form the training engine reads."""
