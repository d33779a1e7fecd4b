"""ZeroMQ bridge between policy bundles and robot controllers.

Controller side (numpy, pyzmq, msgpack only): ``bridge.protocol``, ``bridge.client``,
``bridge.safety``, ``bridge.limits``, ``bridge.controller``. Server side: ``bridge.server``
(``genba bridge serve``). The wire protocol is specified in docs/bridge-protocol.md.
"""
