"""The one compiled part of genba: the MLP kernel (policies/_mlp_kernel.c). Everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and bundles run on numpy instead
(policies/graph_executors.py picks whichever is there).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("policies._mlp_kernel", ["policies/_mlp_kernel.c"], optional=True,
                  extra_compile_args=["-O3", "-std=c11"]),
    ],
)
