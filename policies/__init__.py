"""Policies: train with SB3, imitate scripted experts, export and load deployable bundles.

Import-light on purpose: `policies.bundle` (the loader a controller uses) pulls in numpy and
onnxruntime only; training modules import SB3 and torch themselves.
"""
