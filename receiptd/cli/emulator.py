"""`receiptd emulator`: run the local provider emulator (Alibaba Cloud SMS and Huawei Cloud
KooMessage) until SIGTERM/SIGINT.

On start it prints exactly one JSON line on stdout (endpoints, keys, queue names), so a test
harness or a developer can read where to point receiptd.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from types import FrameType

import click

from receiptd_emulator import Emulator


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=18080, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--profile",
    default="default",
    show_default=True,
    help="Shipped profile name (default, lossy, chaos, demo) or a TOML file.",
)
@click.option(
    "--token-lifetime",
    type=float,
    default=None,
    help="Seconds a QueryTokenForMnsQueue token stays valid (default: the profile's).",
)
def command(host: str, port: int, profile: str, token_lifetime: float | None) -> None:
    """Serve Alibaba Cloud SMS (MNS, Dybaseapi, Dysmsapi) and Huawei Cloud KooMessage on one
    port until SIGTERM/SIGINT (docs/emulator.md)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        emulator = Emulator(profile=profile, host=host, port=port, token_lifetime=token_lifetime)
    except (ValueError, OSError) as error:
        raise click.BadParameter(str(error), param_hint="--profile") from error
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            emulator.start()
        except OSError as error:
            raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from error
        click.echo(json.dumps(emulator.info.as_dict()))
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass  # wake periodically so signals are handled promptly on every platform
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
