"""Policies: one `Policy` shape, training with SB3 or by imitation, evaluation, and deployable bundles.

Imports sim and scenarios below it, and the bridge's wire contract (`bridge.spec`) for the spec
hash a bundle carries. `policies.bundle` (the loader) needs numpy and onnxruntime only; training
modules import SB3 and torch.
"""
