"""An exhaustive model checker of the Multi-Paxos core, in small scope.

docs/design.md, 'Model checking', has what it explores and what it leaves out.

``model`` is one state of a small cluster of real ``MultiPaxosReplica`` objects
driven through the real ``core.pipeline.Pipeline`` on ``MemoryStorage``, and
the actions that change it; ``explore`` searches every state reachable within
a ``Scope``, breadth-first or depth-first, and checks the simulator's
properties (``sim.checkers``) in each; ``scenario`` writes a counterexample as
a data-driven scenario script.
"""
