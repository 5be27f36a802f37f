"""``python -m transcription.worker`` (or ``izs-recognition-worker``): one recognition worker process.

Takes call legs from the centre's Redis (consumer group ``recognition-workers``), transcribes them with the
installed models and sends the transcript back to the intake node that opened each leg. Run as many as the
region needs, on any machine that reaches the Redis (docs/recognition-scale-out.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import redis

from transcription.config import TranscriptionConfig
from transcription.remote import DEFAULT_PREFIX
from transcription.streams import RecognitionWorker

log = logging.getLogger("transcription.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="izs-recognition-worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", default=os.environ.get("IZS_REDIS_URL", ""), help="Redis URL (IZS_REDIS_URL)"
    )
    parser.add_argument(
        "--name", default=f"{socket.gethostname()}-{os.getpid()}", help="worker name (unique)"
    )
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("IZS_MODEL_DIR", "var/models"))
    )
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument(
        "--slots", type=int, default=2, help="legs decoded at the same time (about one per core)"
    )
    parser.add_argument("--max-legs", type=int, default=8, help="legs this worker takes at most")
    parser.add_argument("--lease-s", type=float, default=3.0, help="a silent worker's legs move after this")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--preload", default="cs", help="languages whose models load at start (comma list)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        print(
            "izs-recognition-worker: --redis redis://host:port/db (or IZS_REDIS_URL) is required",
            file=sys.stderr,
        )
        return 2
    config = TranscriptionConfig(
        models_dir=args.models_dir,
        cache_dir=args.cache_dir or args.models_dir / "cache",
        decode_slots=max(1, args.slots),
    )
    try:
        worker = RecognitionWorker(
            args.redis,
            config,
            name=args.name,
            prefix=args.prefix,
            max_legs=args.max_legs,
            lease_s=args.lease_s,
        )
    except redis.RedisError as exc:
        print(f"izs-recognition-worker: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    languages = tuple(lang for lang in args.preload.split(",") if lang)
    worker.service.preload(languages)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    log.info(
        "recognition worker %s serving (%d slots, at most %d legs)", args.name, args.slots, args.max_legs
    )
    print(f"recognition worker {args.name} ready", flush=True)
    worker.run()
    worker.service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
