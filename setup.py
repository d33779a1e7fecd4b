"""The one compiled part of genba: the MLP kernel (policies/_mlp_kernel.c). Everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and bundles run on numpy instead
(policies/graph_executors.py picks whichever is there).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("policies._mlp_kernel", ["policies/_mlp_kernel.c"], optional=True,
                  # -fno-trapping-math: no FP exception traps are ever enabled, and it lets gcc vectorize
                  # the selects in tanh; NaN and inf keep their IEEE meaning (not -ffast-math).
                  extra_compile_args=["-O3", "-std=c11", "-fno-trapping-math"]),
    ],
)
