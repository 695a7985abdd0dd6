"""The applications a node runs on its total-order broadcast (layer 3).

Each is a deterministic ``StateMachine`` fed in total order, or the
client-side code that proposes to it: ``kv`` (``KeyValueStore``: the
replicated key-value store, and where its commands are grouped into log
entries), ``tagged`` (``TaggedStateMachine``: several applications on one
broadcast group, by a one-byte tag) and ``broadcast_log`` (``BroadcastLog``:
the last raw broadcasts, for ``PAXOS.READ``). They sit above the runtime
(``node``) and the pure key-value machine (``kv``), and below the servers
that expose them (``resp``) and the composition root (``cli``).
"""
