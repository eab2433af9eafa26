"""Tenure: a Kubernetes operator that governs non-human identities from approved ITSM tickets."""

__version__ = '0.1.0'
