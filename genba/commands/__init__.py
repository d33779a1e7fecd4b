"""One module per group of `genba` verbs. Each parses flags and calls the libraries.

Libraries are imported inside the command functions where they are heavy (torch, SB3, PyBullet,
aiohttp), so that `genba --help` and a controller-side verb such as `genba bridge keygen` start
without them.
"""
