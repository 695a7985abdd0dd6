"""Connection commands: ``PING``, ``ECHO``, ``QUIT``, ``SELECT``, ``AUTH``, ``HELLO``, ``CLIENT``.

They behave like Redis's, so redis-cli and client libraries work unchanged;
none of them touches the log.
"""

from __future__ import annotations

import hmac

from .family import OK, REDIS_ROLE, REDIS_VERSION, Family, Handler, help_reply, wrong_arity
from .protocol import Error, Reply, SimpleString, Verbatim
from .server import Connection

__all__ = ["BEFORE_AUTH", "ConnectionCommands"]

#: Commands a client may send before it authenticated.
BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})


_CLIENT_HELP = (
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "SETNAME <connection-name>",
    "    Assign the name <connection-name> to the current connection.",
    "SETINFO <option> <value>, NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
    "    Accepted and ignored (client libraries send them when they connect).",
)


class ConnectionCommands(Family):
    """The connection's own commands (see the module docstring)."""

    def table(self) -> dict[bytes, Handler]:
        return {
            b"PING": self._ping,
            b"ECHO": self._echo,
            b"QUIT": self._quit,
            b"SELECT": self._select,
            b"AUTH": self._auth,
            b"HELLO": self._hello,
            b"CLIENT": self._client,
        }

    def _ping(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) > 2:
            return wrong_arity(args[0])
        if conn.protocol == 2 and self.node.pubsub.count(conn):
            return [b"pong", args[1] if len(args) == 2 else b""]  # Redis's, in subscribe mode
        return SimpleString("PONG") if len(args) == 1 else args[1]

    def _echo(self, conn: Connection, args: list[bytes]) -> Reply:
        return args[1] if len(args) == 2 else wrong_arity(args[0])

    def _quit(self, conn: Connection, args: list[bytes]) -> Reply:
        conn.closing = True
        return OK

    def _select(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 2:
            return wrong_arity(args[0])
        if args[1] != b"0":
            return Error("ERR DB index is out of range")
        return OK

    def _check_password(self, conn: Connection, user: bytes, password: bytes) -> Error | None:
        if self.node.requirepass is None:
            return Error(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        ok = user == b"default" and hmac.compare_digest(password, self.node.requirepass.encode())
        if not ok:
            return Error("WRONGPASS invalid username-password pair or user is disabled.")
        conn.authenticated = True
        return None

    def _auth(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) == 2:
            err = self._check_password(conn, b"default", args[1])
        elif len(args) == 3:
            err = self._check_password(conn, args[1], args[2])
        else:
            return wrong_arity(args[0])
        return err if err is not None else OK

    def _hello(self, conn: Connection, args: list[bytes]) -> Reply:
        protocol = conn.protocol
        i = 1
        if len(args) > 1:
            try:
                protocol = int(args[1])
            except ValueError:
                return Error("ERR Protocol version is not an integer or out of range")
            if protocol not in (2, 3):
                return Error("NOPROTO unsupported protocol version")
            i = 2
        while i < len(args):
            opt = args[i].upper()
            if opt == b"AUTH" and i + 2 < len(args):
                err = self._check_password(conn, args[i + 1], args[i + 2])
                if err is not None:
                    return err
                i += 3
            elif opt == b"SETNAME" and i + 1 < len(args):
                conn.name = args[i + 1]
                i += 2
            else:
                return Error(f"ERR Syntax error in HELLO option '{opt.decode(errors='replace')}'")
        if self.node.requirepass is not None and not conn.authenticated:
            return Error("NOAUTH HELLO must be called with the client already authenticated")
        conn.protocol = protocol
        return {
            b"server": b"redis",
            b"version": REDIS_VERSION.encode(),
            b"proto": protocol,
            b"id": conn.id,
            b"mode": b"standalone",
            b"role": REDIS_ROLE.encode(),
            b"modules": [],
        }

    def _client(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) < 2:
            return wrong_arity(args[0])
        sub = args[1].upper()
        if sub == b"SETNAME" and len(args) == 3:
            if any(c <= 32 or c >= 127 for c in args[2]):
                return Error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                )
            conn.name = args[2]
            return OK
        if sub == b"GETNAME" and len(args) == 2:
            return conn.name or None
        if sub == b"ID" and len(args) == 2:
            return conn.id
        if sub == b"SETINFO" and len(args) == 4:
            return self._client_setinfo(conn, args[2], args[3])
        if sub == b"INFO" and len(args) == 2:
            conn.last_command = b"client|info"
            return Verbatim(self._client_line(conn, self._idle_of(conn)), "txt")
        if sub == b"LIST":
            conn.last_command = b"client|list"
            return self._client_list(args)
        if sub == b"KILL" and len(args) >= 3:
            return self._client_kill(conn, args)
        if sub in (b"NO-EVICT", b"NO-TOUCH") and len(args) == 3:
            return OK  # client libraries send these at connect: nothing to evict or touch
        if sub in (b"SETINFO", b"INFO", b"KILL", b"NO-EVICT", b"NO-TOUCH", b"SETNAME") or (
            sub in (b"GETNAME", b"ID") and len(args) != 2
        ):
            return wrong_arity(b"client|" + sub)
        if sub == b"HELP" and len(args) == 2:
            return help_reply("CLIENT", _CLIENT_HELP)
        return Error(
            f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CLIENT HELP."
        )

    def _client_setinfo(self, conn: Connection, attr: bytes, value: bytes) -> Reply:
        option = attr.upper()
        if option not in (b"LIB-NAME", b"LIB-VER"):
            return Error(f"ERR Unrecognized option '{attr.decode(errors='replace')}'")
        if any(c < 33 or c > 126 for c in value):
            what = option.lower().decode()
            return Error(f"ERR {what} cannot contain spaces, newlines or special characters.")
        if option == b"LIB-NAME":
            conn.lib_name = value
        else:
            conn.lib_ver = value
        return OK

    def _idle_of(self, conn: Connection) -> float:
        if self.node.server is None:
            return 0.0
        for other, idle in self.node.server.client_states():
            if other.id == conn.id:
                return idle
        return 0.0

    def _client_line(self, conn: Connection, idle_s: float) -> bytes:
        """One line of ``CLIENT LIST``, with Redis 7.2's fields in Redis's order.

        Fields that describe Redis's buffers (``qbuf``, ``omem``, ...) are 0:
        clients parse them, none of them means anything here.
        """
        now = self.node.server.now() if self.node.server is not None else conn.created_at
        flags = "x" if conn.queued is not None else "b" if "blocked" in conn.extra else "N"
        multi = len(conn.queued) if conn.queued is not None else -1
        fields = [
            f"id={conn.id}",
            f"addr={conn.peer}",
            f"laddr={conn.laddr}",
            f"fd={conn.fd}",
            f"name={conn.name.decode(errors='replace')}",
            f"age={int(max(0.0, now - conn.created_at))}",
            f"idle={int(idle_s)}",
            f"flags={flags}",
            "db=0",
            "sub=0",
            "psub=0",
            "ssub=0",
            f"multi={multi}",
            "qbuf=0",
            "qbuf-free=0",
            "argv-mem=0",
            "multi-mem=0",
            "rbs=0",
            "rbp=0",
            "obl=0",
            "oll=0",
            "omem=0",
            "tot-mem=0",
            "events=r",
            f"cmd={conn.last_command.lower().decode(errors='replace')}",
            "user=default",
            "redir=-1",
            f"resp={conn.protocol}",
            f"lib-name={conn.lib_name.decode(errors='replace')}",
            f"lib-ver={conn.lib_ver.decode(errors='replace')}",
        ]
        return (" ".join(fields) + "\n").encode()

    def _client_list(self, args: list[bytes]) -> Reply:
        states = self.node.server.client_states() if self.node.server is not None else []
        if len(args) >= 4 and args[2].upper() == b"ID":
            try:
                wanted = {int(a) for a in args[3:]}
            except ValueError:
                return Error("ERR Invalid client ID")
            states = [(c, idle) for c, idle in states if c.id in wanted]
        elif len(args) == 4 and args[2].upper() == b"TYPE":
            kind = args[3].lower()
            if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                return Error(f"ERR Unknown client type '{args[3].decode(errors='replace')}'")
            if kind != b"normal":
                states = []
        elif len(args) != 2:
            return Error("ERR syntax error")
        return Verbatim(b"".join(self._client_line(c, idle) for c, idle in states), "txt")

    def _client_kill(self, conn: Connection, args: list[bytes]) -> Reply:
        """``CLIENT KILL addr:port`` (old form: OK) or ``CLIENT KILL <filter> <value> ...``."""
        states = self.node.server.client_states() if self.node.server is not None else []
        if len(args) == 3:
            victims = [c for c, _ in states if c.peer.encode() == args[2]]
            if not victims:
                return Error("ERR No such client")
            self._kill(conn, victims)
            return OK
        if len(args) % 2:
            return Error("ERR syntax error")
        skip_me = True
        victims = [c for c, _ in states]
        for i in range(2, len(args), 2):
            option, value = args[i].upper(), args[i + 1]
            if option == b"ID":
                try:
                    wanted = int(value)
                except ValueError:
                    return Error("ERR client-id should be greater than 0")
                victims = [c for c in victims if c.id == wanted]
            elif option == b"ADDR":
                victims = [c for c in victims if c.peer.encode() == value]
            elif option == b"LADDR":
                victims = [c for c in victims if c.laddr.encode() == value]
            elif option == b"USER":
                victims = victims if value == b"default" else []
            elif option == b"TYPE":
                if value.lower() not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                    return Error(f"ERR Unknown client type '{value.decode(errors='replace')}'")
                victims = victims if value.lower() == b"normal" else []
            elif option == b"SKIPME":
                if value.lower() not in (b"yes", b"no"):
                    return Error("ERR syntax error")
                skip_me = value.lower() == b"yes"
            else:
                return Error("ERR syntax error")
        if skip_me:
            victims = [c for c in victims if c.id != conn.id]
        self._kill(conn, victims)
        return len(victims)

    def _kill(self, conn: Connection, victims: list[Connection]) -> None:
        for victim in victims:
            if victim.id == conn.id:
                conn.closing = True  # after this reply, as Redis closes its own caller
            elif self.node.server is not None:
                self.node.server.kill_client(victim.id)
