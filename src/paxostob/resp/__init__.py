"""The Redis protocol (RESP) front end of the key-value store.

``resp.protocol`` is the sans-IO parser of client requests and encoder of
replies (layer 0: no IO, no clock). The asyncio server and the commands that
use it live beside it at layer 3. This file imports nothing, so importing the
protocol does not pull in the server.
"""
