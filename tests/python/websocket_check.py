"""Python's `websockets` client against examples/websocket.rs (tests/websocket.rs runs it).

    websocket_check.py BASE_URL [all|echo]

`echo` runs the echo checks only (behind nginx); `all` also the limits, ping, close codes,
200 open sockets while plain requests are answered, 503 past the cap, generation, and a
client that leaves mid-generation (the Rust test then finds the server's log line).
"""

import contextlib
import json
import sys
import threading
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from checks import check, exit_status

MIB = 1024 * 1024
TIMEOUT = 30


def ws_url(base, path):
    return base.replace("http://", "ws://", 1) + path


def open_socket(base, path, **options):
    return connect(ws_url(base, path), max_size=None, open_timeout=TIMEOUT, **options)


def closed_with(socket, code):
    """Waits until the server closes `socket`; whether its close frame carried `code`."""
    try:
        while True:
            socket.recv(timeout=TIMEOUT)
    except ConnectionClosed as closed:
        got = closed.rcvd.code if closed.rcvd else None
        print(f"      closed by the server with {got} ({closed.rcvd.reason if closed.rcvd else ''})")
        return got == code
    except TimeoutError:
        return False


def echo(base):
    with open_socket(base, "/ws/echo") as socket:
        socket.send("héllo, wörld")
        check(socket.recv(timeout=TIMEOUT) == "héllo, wörld", "echo: text comes back as text")
        socket.send(b"\x00\x01\xfe\xff")
        check(socket.recv(timeout=TIMEOUT) == b"\x00\x01\xfe\xff", "echo: binary comes back as binary")
        socket.send(["frag", "men", "ted"])
        check(socket.recv(timeout=TIMEOUT) == "fragmented", "echo: a fragmented message is reassembled")
        whole = bytes(range(256)) * (MIB // 256)
        socket.send(whole)
        check(socket.recv(timeout=TIMEOUT) == whole, "echo: a message of exactly 1 MiB comes back")
        socket.close(4001, "bye")
        check(socket.close_code == 4001, "close: the server answers the client's close code 4001")


def limits(base):
    with open_socket(base, "/ws/echo") as socket:
        socket.send(b"x" * (MIB + 1))
        check(closed_with(socket, 1009), "limits: a message of 1 MiB + 1 in one frame: close 1009")
    with open_socket(base, "/ws/echo") as socket:
        socket.send([b"y" * (256 * 1024) for _ in range(5)])
        check(closed_with(socket, 1009), "limits: 5 fragments of 256 KiB: close 1009")
    with open_socket(base, "/ws/echo") as socket:
        socket.send("still serving")
        check(socket.recv(timeout=TIMEOUT) == "still serving", "limits: the next socket echoes")


def ping(base):
    with open_socket(base, "/ws/echo", ping_interval=None) as socket:
        pong = socket.ping(b"are you there")
        check(pong.wait(TIMEOUT), "ping: the server answers a ping with a pong")
        socket.send("after the ping")
        check(socket.recv(timeout=TIMEOUT) == "after the ping", "ping: messages flow after it")


def plain_get(base):
    try:
        urllib.request.urlopen(base + "/ws/echo", timeout=TIMEOUT)
        check(False, "a plain GET on a WebSocket route is refused")
    except urllib.error.HTTPError as err:
        body = json.loads(err.read())
        check(err.code == 426 and body["code"] == "upgrade_required",
              f"a plain GET on a WebSocket route: {err.code} {body}")


def get_root(base):
    with urllib.request.urlopen(base + "/", timeout=TIMEOUT) as answer:
        return answer.status, answer.read()


def many_sockets(base):
    with contextlib.ExitStack() as stack:
        open_many(base, stack)
    with open_socket(base, "/ws/echo") as socket:
        socket.send("room again")
        check(socket.recv(timeout=TIMEOUT) == "room again", "closed sockets free their places")


def open_many(base, stack):
    sockets = [stack.enter_context(open_socket(base, "/ws/echo")) for _ in range(200)]
    answers = []

    def plain_requests():
        for _ in range(20):
            answers.append(get_root(base))

    thread = threading.Thread(target=plain_requests)
    thread.start()
    thread.join(TIMEOUT)
    check(answers == [(200, b"hello")] * 20,
          f"200 open sockets: 20 plain requests answered 200 meanwhile ({len(answers)})")
    for i, socket in enumerate(sockets):
        socket.send(f"socket {i}")
    echoed = [socket.recv(timeout=TIMEOUT) for socket in sockets]
    check(echoed == [f"socket {i}" for i in range(200)], "200 open sockets: each still echoes")
    sockets += [stack.enter_context(open_socket(base, "/ws/echo")) for _ in range(56)]
    try:
        with open_socket(base, "/ws/echo"):
            check(False, "the 257th socket is refused")
    except InvalidStatus as refused:
        status = refused.response.status_code
        body = json.loads(refused.response.body)
        check(status == 503 and "too many open WebSockets (limit 256)" in body["error"],
              f"the 257th socket: {status} {body}")


def generate(base):
    with open_socket(base, "/ws/generate") as socket:
        socket.send(json.dumps({"prompt": "The ", "max_tokens": 40}))
        tokens = []
        while True:
            message = socket.recv(timeout=TIMEOUT)
            try:
                done = json.loads(message)
                if isinstance(done, dict) and done.get("done") is True:
                    break
            except ValueError:
                pass
            tokens.append(message)
        text = "".join(tokens)
        check(all(isinstance(t, str) and t for t in tokens), "generate: each token is a text message")
        check(done["completion_tokens"] == 40 and len(text.encode()) == 40,
              f"generate: 40 tokens, then done: {done} {text!r}")
        check(len(tokens) <= 40, f"generate: {len(tokens)} messages for 40 byte tokens")
        socket.send("not json")
        error = json.loads(socket.recv(timeout=TIMEOUT))
        check(error["code"] == "invalid_json", f"generate: a broken prompt gets an error: {error}")
    with open_socket(base, "/ws/generate") as socket:
        socket.send(json.dumps({"prompt": "def ", "max_tokens": 4096}))
        first = socket.recv(timeout=TIMEOUT)
        check(isinstance(first, str), f"leaving: the first token came ({first!r}), now close")
    print("left mid-generation", flush=True)


def main():
    base = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "all"
    echo(base)
    if mode == "all":
        plain_get(base)
        limits(base)
        ping(base)
        many_sockets(base)
        generate(base)
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
