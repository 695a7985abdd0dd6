"""The sans-IO Paxos core: plain, synchronous, deterministic.

Events go in through ``step``; one ``Ready`` batch of effects comes out of
``ready()`` and is acknowledged with ``advance``. No IO, no clock (time is
``Tick``), randomness only from an injected ``random.Random``.
"""
