"""The Redis protocol (RESP) front end of the key-value store.

``resp.protocol`` is the sans-IO parser of client requests and encoder of
replies (layer 0: no IO, no clock). The asyncio server (``server``), the
dispatcher (``commands``) and one module per command family (``family`` says
what one is) live beside it at layer 4, above the applications (``apps``).
This file imports nothing, so importing the protocol does not pull in the
server.
"""
