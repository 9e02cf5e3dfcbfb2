"""`python -m libs.bus.deadletters [--nats URL] list|show|replay|drop ...`: the operator's dead letters.

Exit 0 on success; 2, with one line naming the problem, for bad input, an unknown dead letter or consumer,
or a NATS server that cannot be reached."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn
from urllib.parse import urlparse

import nats
from nats.aio.client import Client

from libs.bus.deadletters import admin
from libs.bus.deadletters.admin import DeadLetter, Unknown

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
PROG = "python -m libs.bus.deadletters"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line naming the problem instead of the usage block."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _seq(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < 2**64:
        raise argparse.ArgumentTypeError(f'"{text}" is not a dead-letter sequence (a number from 1)')
    return int(text)


def parser() -> argparse.ArgumentParser:
    """The command line: a global --nats and one command."""
    p = _Parser(prog=PROG, description="List, show, replay and drop the events consumers gave up on.")
    p.add_argument("--nats", metavar="URL", help=f"NATS server (default $CPC_NATS_URL or {DEFAULT_NATS_URL})")
    commands = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ls = commands.add_parser("list", help="dead letters, oldest first")
    ls.add_argument("--consumer", metavar="NAME", help="only this consumer's (durable name)")
    show = commands.add_parser("show", help="one dead letter's headers and payload")
    show.add_argument("seq", type=_seq, metavar="SEQ")
    for name, verb in (("replay", "deliver again to its consumer only"), ("drop", "remove for good")):
        cmd = commands.add_parser(name, help=verb)
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("seq", type=_seq, metavar="SEQ", nargs="?")
        which.add_argument("--consumer", metavar="NAME", help="every dead letter of this consumer")
        if name == "replay":
            which.add_argument("--all", action="store_true", help="every dead letter")
    return p


def _nats_url(given: str | None) -> str:
    url = given or os.environ.get("CPC_NATS_URL") or DEFAULT_NATS_URL
    parsed = urlparse(url if "://" in url else f"nats://{url}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme not in ("nats", "tls", "ws", "wss") or not parsed.hostname or port == -1:
        raise Unknown(f'bad NATS URL "{url}" (expected nats://host:port)')
    return url


async def _connect(url: str) -> Client:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        # nats-py's default callback logs each failed attempt with a traceback.
        errors.append(exc)

    try:
        # max_reconnect_attempts=0 would make nats-py try the first connect forever.
        return await nats.connect(
            url,
            name="deadletters-cli",
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            connect_timeout=3,
            error_cb=remember,
        )
    except Exception as exc:
        cause = errors[-1] if errors else exc
        raise Unknown(f"cannot reach NATS at {url}: {str(cause) or type(cause).__name__}") from None


def _row(letter: DeadLetter) -> str:
    return "\t".join(
        [str(letter.seq), letter.at, letter.consumer, str(letter.deliveries), letter.subject, letter.error]
    )


def _shown(letter: DeadLetter) -> str:
    try:
        payload: object = json.loads(letter.data)
    except ValueError:
        payload = letter.data.decode("utf-8", "replace")
    body = {"seq": letter.seq, "headers": dict(letter.headers), "payload": payload}
    return json.dumps(body, indent=2, ensure_ascii=False)


async def _run(args: argparse.Namespace, out: list[str]) -> None:
    nc = await _connect(_nats_url(args.nats))
    try:
        js = nc.jetstream()
        if args.command == "list":
            letters = await admin.list_letters(js, args.consumer)
            out.append("seq\tat\tconsumer\tdeliveries\tsubject\terror")
            out.extend(_row(letter) for letter in letters)
        elif args.command == "show":
            out.append(_shown(await admin.get(js, args.seq)))
        elif args.command == "replay":
            if args.seq is not None:
                letters = [await admin.get(js, args.seq)]
            else:
                letters = await admin.list_letters(js, None if args.all else args.consumer)
            for letter in letters:
                await admin.replay(js, letter)
            out.append(f"replayed {len(letters)} dead letter(s)")
        elif args.seq is not None:
            await admin.drop(js, args.seq)
            out.append(f"dropped dead letter {args.seq}")
        else:
            out.append(f"dropped {await admin.drop_consumer(js, args.consumer)} dead letter(s)")
    finally:
        await nc.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 2 with one line on stderr for anything the operator must fix."""
    args = parser().parse_args(argv)
    out: list[str] = []
    try:
        asyncio.run(_run(args, out))
    except Unknown as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    except Exception as exc:  # a JetStream error answer: still one line, no traceback
        sys.stderr.write(f"{PROG}: {type(exc).__name__}: {exc}\n")
        return 2
    finally:
        if out:
            sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
