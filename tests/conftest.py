import os

# Small MLPs and PyBullet are fastest single-threaded on this 2-core machine (DEVELOPERS.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
