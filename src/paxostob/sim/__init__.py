"""The deterministic simulator: the pure core on a virtual-time network, one seed for everything.

``runner.run(seed)`` draws a fault mix and a schedule (``swarm``), drives
Multi-Paxos (or single-decree) replicas over a ``network.SimNetwork`` (each
Multi-Paxos replica on a ``MemoryStorage`` with an ``app.SimApp``, crashed
by power loss and restarted from its storage) and judges the history with
``checkers``; a failure is a ``CheckFailure`` that names the command
replaying it. No asyncio, no ``node``, no clock.
"""
