"""ZeroMQ bridge between policy bundles and robot controllers. Imports no other genba package.

Controller side (numpy, pyzmq, msgpack only; what a robot PC runs):
- ``protocol``: frames and headers; ``spec``: the spec hash; ``client``: the DEALER client with deadlines;
- ``images``: a pixel bundle's camera frames on the wire (raw, PNG, JPEG through OpenCV) and their checks;
- ``servo``: one servo pipeline (interpolation, ``watchdog``, ``safety`` filter over ``limits``);
- ``controller``: the policy loop and the servo loop around them; ``gantry``: a physics-free robot;
- ``keys`` (CURVE), ``endpoints``, ``latency``, ``realtime``, ``errors``, ``docgen`` (the doc's byte examples);
- ``hses``: Yaskawa's High-Speed Ethernet Server protocol over UDP (packets, units, client; docs/hses.md).
Server side: ``server`` (one ROUTER, batched ``inference``), ``policy`` (what it needs of a bundle),
``telemetry``. The wire protocol is specified in docs/bridge-protocol.md.
"""
