"""``python -m pop3core``: watch a client and a server engine talk, in memory.

A demonstration of the Sans-I/O design: two `Connection` objects (a client, and
the server inside a `ServerSession`) exchange bytes through plain variables, and
every line that crosses the "wire" is printed. No socket is involved.
"""

from __future__ import annotations

import sys

from . import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    Capa,
    Connection,
    ConnectionClosed,
    Data,
    Dele,
    Event,
    List,
    LoginFailed,
    MaildropRequest,
    MessageInfo,
    MessageRequest,
    Pass,
    PasswordCheck,
    Quit,
    Retr,
    ServerOptions,
    ServerSession,
    SessionEnded,
    Stat,
    Top,
    Uidl,
    UpdateRequest,
    User,
    normalize_newlines,
)

MAILDROP = [
    normalize_newlines(b"From: bob@example.org\nSubject: hello\n\nHi Alice,\n.see the dot?\n"),
    normalize_newlines(b".a message whose first octet is a dot\n"),
]


def _show(prefix: str, data: bytes, out: list[str]) -> None:
    out.extend(f"{prefix} {line}" for line in data.decode("utf-8", "replace").splitlines())


def run() -> list[str]:
    """Run the scripted session; return the transcript lines."""
    transcript: list[str] = []
    server = ServerSession(ServerOptions(allow_cleartext=True, implementation="pop3core demo"))
    client = Connection(CLIENT)

    def serve(data: bytes) -> bytes:
        if data:
            server.receive_data(data)
        while True:
            event = server.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            transcript.append(f"   (server application: {event!r})")
            if type(event) is PasswordCheck:
                server.password_checked(event.username == "alice" and event.password == "secret")
            elif type(event) is LoginFailed:
                # A real server logs it and waits event.delay seconds first.
                server.failure_delay_elapsed()
            elif type(event) is MaildropRequest:
                server.maildrop_opened(
                    MessageInfo(len(m), f"msg-{i}") for i, m in enumerate(MAILDROP)
                )
            elif type(event) is MessageRequest:
                server.send_message(MAILDROP[event.index])
                server.end_message()
            elif type(event) is UpdateRequest:
                server.update_done()
            elif type(event) is SessionEnded:
                break
        return server.bytes_to_send()

    def receive(data: bytes) -> list[Event]:
        _show("S:", data, transcript)
        client.receive_data(data)
        events: list[Event] = []
        while (event := client.next_event()) is not NEED_DATA and event is not PAUSED:
            events.append(event)
            if type(event) is Data:
                transcript.append(f"   (client body, unstuffed: {bytes(event.data)!r})")
            else:
                transcript.append(f"   (client event: {event!r})")
            if type(event) is ConnectionClosed:
                break
        return events

    receive(serve(b""))
    commands = [Capa(), User("alice"), Pass("secret"), Stat(), List(), Uidl()]
    commands += [Top(1, 0), Retr(2), Dele(1), Quit()]
    for command in commands:
        wire = client.send(command)
        _show("C:", wire if type(command) is not Pass else b"PASS ******\r\n", transcript)
        receive(serve(wire))
    transcript.append(f"client state {client.state.value}, server state {server.state.value}")
    return transcript


def main() -> int:
    print("\n".join(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
