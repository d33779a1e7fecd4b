"""`genba robustness`: a bundle evaluated under shop-floor perturbations, one at a time and together.

- suite.py: suites (YAML) of randomisation factors and bridge faults, magnitudes, and the rows they give.
- run.py: the rows evaluated in worker processes, in the simulator or through the twin; the report.
- chart.py: the report as a PNG.
"""
