"""Scenario calls as recognised: the real speech pipeline for a share, a fitted noise model for the rest.

``izs triage recognise FILE.jsonl ... --out RECOGNISED.jsonl`` (or ``--in-place``) adds to every call

* ``caller_recognised``: the caller's words as the system would have heard them, and
* ``recognised_by``: how — ``"pipeline:<voice>/8k/<engine>"`` for the real pipeline (Festival Czech
  ``voice_czech_machac``, text in ISO-8859-2, or espeak-ng for other languages → sox 8 kHz telephone band
  300–3400 Hz → the shipped Whisper model through the product's own TranscriptionService), or
  ``"noise:<model digest>:<seed>"`` for the noise model (routing/asr_noise.py) fitted to the real pairs.

Which calls go through the real pipeline: ``--real N`` of them, balanced over language and incident type,
chosen by a hash of the call id (the same calls for the same files). Results are appended one line per call as
they finish, so a stopped run resumes where it stopped (``--shard K/N`` splits the work over processes).
``--fit`` refits the noise model on every real pair in the output (and any ``--pairs`` files) and writes it
to ``--noise-file`` before the rest are noised. Not in routing/: it runs programs and speech models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routing.asr_noise import DEFAULT_NOISE_FILE, NoiseModel

log = logging.getLogger("izs.triage.corpus")

ESPEAK_VOICES = {"sk": "sk", "de": "de", "en": "en", "ru": "ru", "uk": "uk", "pl": "pl", "vi": "vi"}
PIPELINE_TAG = "pipeline"
NOISE_TAG = "noise"


def read_records(paths: Sequence[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
            if (
                not isinstance(record, dict)
                or "id" not in record
                or not isinstance(record.get("caller"), str)
            ):
                raise ValueError(f"{path}:{number}: not a scenario record (needs id and caller)")
            record["_file"] = str(path)
            out.append(record)
    return out


def _rank(call_id: str) -> str:
    return hashlib.sha256(call_id.encode("utf-8")).hexdigest()


def balanced_choice(records: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """n calls spread evenly over (language, incident type), fixed by a hash of the ids."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        key = (str(record.get("language", "cs")), str((record.get("expected") or {}).get("incident_type")))
        groups[key].append(record)
    queues = [sorted(g, key=lambda r: _rank(str(r["id"]))) for _, g in sorted(groups.items())]
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < n and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < n:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a stopped run: that call is recognised again
            out[str(item["id"])] = item
    return out


class Pipeline:
    """Synthesised speech → 8 kHz telephone band → the product's TranscriptionService with Whisper."""

    def __init__(self, cache_dir: Path, threads: int = 1) -> None:
        from transcription.config import TranscriptionConfig, WhisperConfig
        from transcription.models import ModelRegistry
        from transcription.service import ModelEngines, TranscriptionService

        languages = ("cs", *ESPEAK_VOICES)
        self.config = TranscriptionConfig(
            models_dir=cache_dir / "models",
            cache_dir=cache_dir / "cache",
            engines=dict.fromkeys(languages, "whisper"),
            prefer_vosk_when_installed=False,
            max_backlog_s=3600.0,
            whisper=WhisperConfig(cpu_threads=threads),
        )
        registry = ModelRegistry.from_config(self.config)
        self.model = registry.whisper_model()
        self._events: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()
        self.service = TranscriptionService(
            self.config, self._on_event, engines=ModelEngines(self.config, registry)
        )

    @property
    def engine_name(self) -> str:
        return self.model.name

    def _on_event(self, event: Any) -> None:
        from transcription.events import TranscriptFinal

        if isinstance(event, TranscriptFinal):
            with self._lock:
                self._events[event.call_ref].append(event.text)

    def voice(self, language: str) -> str:
        return (
            "festival:czech_machac" if language == "cs" else f"espeak-ng:{ESPEAK_VOICES.get(language, 'cs')}"
        )

    def recognise(self, call_id: str, text: str, language: str) -> str:
        import numpy as np

        from transcription.evaluation import (
            frames,
            read_wav,
            synthesize_czech,
            synthesize_espeak,
            telephone_band,
        )

        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "call.wav"
            if language == "cs":
                synthesize_czech(text, wav, voice="czech_machac", rate=8000)
            else:
                raw = Path(tmp) / "raw.wav"
                synthesize_espeak(text, raw, voice=ESPEAK_VOICES.get(language, "cs"), rate=16000)
                telephone_band(raw, wav, 8000)
            samples, rate = read_wav(wav)
        samples = np.concatenate([np.zeros(rate // 2, np.int16), samples, np.zeros(rate, np.int16)])
        ref = f"corpus-{call_id}"
        self.service.open_leg(ref, "caller", rate, language_hint=language)
        for frame in frames(samples, rate):
            self.service.feed(ref, "caller", frame)
        self.service.close_leg(ref, "caller").wait(1800)
        with self._lock:
            return " ".join(self._events.pop(ref, []))

    def close(self) -> None:
        self.service.close()


def _append(path: Path, item: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(item, ensure_ascii=False) + "\n")


def noise_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def run(argv: Sequence[str] | None = None, out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="izs triage recognise", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="JSONL of {id, caller_recognised, recognised_by} (appended)")
    target.add_argument("--in-place", action="store_true", help="write the two fields into the files")
    parser.add_argument("--real", type=int, default=0, help="calls to run through the real pipeline")
    parser.add_argument("--shard", default="1/1", help="K/N: this process takes every N-th chosen call")
    parser.add_argument("--fit", action="store_true", help="refit the noise model on the real pairs first")
    parser.add_argument("--pairs", type=Path, action="append", default=[], help="more real results to fit on")
    parser.add_argument("--noise-file", type=Path, default=DEFAULT_NOISE_FILE)
    parser.add_argument("--no-noise", action="store_true", help="only the real pipeline, no noised rest")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache/recognise"))
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
        if not 1 <= shard <= shards:
            raise ValueError
    except ValueError:
        err.write(f"error: --shard must be K/N with 1 <= K <= N, got {args.shard!r}\n")
        return 2
    try:
        records = read_records(args.files)
    except (OSError, ValueError) as exc:
        err.write(f"error: {exc}\n")
        return 2
    results_path: Path = args.out if args.out is not None else args.cache_dir / "in-place.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_results(results_path)
    for record in records:  # a file that already carries real recognition keeps it
        if str(record.get("recognised_by", "")).startswith(PIPELINE_TAG) and record["id"] not in done:
            done[record["id"]] = {k: record[k] for k in ("id", "caller_recognised", "recognised_by")}

    chosen = balanced_choice(records, args.real)[shard - 1 :: shards]
    todo = [
        r for r in chosen if not str(done.get(r["id"], {}).get("recognised_by", "")).startswith(PIPELINE_TAG)
    ]
    if todo:
        pipeline = Pipeline(args.cache_dir)
        try:
            for i, record in enumerate(todo, start=1):
                language = str(record.get("language", "cs"))
                try:
                    text = pipeline.recognise(str(record["id"]), record["caller"], language)
                except (OSError, RuntimeError, ValueError) as exc:  # a tool failed on this text: skip it
                    err.write(f"{record['id']}: not recognised: {exc}\n")
                    continue
                item = {
                    "id": record["id"],
                    "language": language,
                    "caller_recognised": text,
                    "recognised_by": f"{PIPELINE_TAG}:{pipeline.voice(language)}/8k/{pipeline.engine_name}",
                }
                _append(results_path, item)
                done[item["id"]] = item
                out.write(f"[{i}/{len(todo)}] {record['id']} {language}: {text[:70]}\n")
                out.flush()
        finally:
            pipeline.close()

    if args.fit:
        said = {str(r["id"]): (str(r.get("language", "cs")), r["caller"]) for r in records}
        pairs = [
            (said[cid][0], said[cid][1], item["caller_recognised"])
            for cid, item in done.items()
            if cid in said and str(item.get("recognised_by", "")).startswith(PIPELINE_TAG)
        ]
        for extra in args.pairs:  # more real results, of calls in FILES
            pairs.extend(
                (said[cid][0], said[cid][1], str(item["caller_recognised"]))
                for cid, item in read_results(extra).items()
                if cid in said
                and cid not in done
                and str(item.get("recognised_by", "")).startswith(PIPELINE_TAG)
            )
        if not pairs:
            err.write("error: --fit needs calls recognised by the real pipeline\n")
            return 1
        model = NoiseModel.fit(
            pairs, source=f"{len(pairs)} real pairs (Festival/espeak-ng -> 8 kHz -> Whisper)"
        )
        model.save(args.noise_file)
        out.write(f"noise model fitted on {len(pairs)} real pairs -> {args.noise_file}\n")

    if not args.no_noise:
        model = NoiseModel.load(args.noise_file)
        tag = f"{NOISE_TAG}:{noise_digest(args.noise_file)}:{args.seed}"
        for record in records:
            cid = str(record["id"])
            if str(done.get(cid, {}).get("recognised_by", "")).startswith(PIPELINE_TAG):
                continue
            language = str(record.get("language", "cs"))
            item = {
                "id": cid,
                "language": language,
                "caller_recognised": model.apply(record["caller"], language, args.seed, cid),
                "recognised_by": tag,
            }
            if done.get(cid) != item:
                if args.out is not None:
                    _append(results_path, item)
                done[cid] = item

    if args.in_place:
        by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            result = done.get(str(record["id"]))
            if result is not None:
                record["caller_recognised"] = result["caller_recognised"]
                record["recognised_by"] = result["recognised_by"]
            by_file[record.pop("_file")].append(record)
        for name, items in by_file.items():
            Path(name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), "utf-8")
    real = sum(
        1
        for r in records
        if str(done.get(str(r["id"]), {}).get("recognised_by", "")).startswith(PIPELINE_TAG)
    )
    out.write(f"{len(records)} calls: {real} recognised by the real pipeline, {len(records) - real} noised\n")
    return 0


# ------------------------------------------------------------------------- the centre's confirmed incidents


def confirmed_scenarios(repository: Any, page: int = 200) -> list[dict[str, Any]]:
    """Every incident a call taker confirmed or corrected (``confirmed_by`` set), one scenario record per
    linked call with caller speech: the labels are the incident as it stands (type, agencies, priority,
    T-CPR, spoken location), the text is the caller's transcript as the centre recognised it."""
    records: list[dict[str, Any]] = []
    offset = 0
    while True:
        incidents, total = repository.list_incidents(limit=page, offset=offset)
        for incident in incidents:
            if not incident.confirmed_by:
                continue
            if incident.incident_type.value == "UNKNOWN":
                continue  # nothing to learn from a call nobody heard
            location = incident.location
            for call_id in incident.call_ids:
                call = repository.get_call(call_id)
                text = " ".join(
                    s.text.strip() for s in call.transcript if s.leg == "caller" and s.text.strip()
                )
                if not text:
                    continue
                records.append(
                    {
                        "id": f"centre-{incident.id}-{call.id}",
                        "dialed": call.dialled,
                        "caller_number": call.caller.e164 or None,
                        "language": call.language or "cs",
                        "caller": text,
                        "caller_recognised": text,
                        "recognised_by": "centre:live transcription",
                        "taker": " ".join(s.text for s in call.transcript if s.leg == "taker"),
                        "style": "centre",
                        "expected": {
                            "agencies": [a.value for a in incident.agency_codes],
                            "incident_type": incident.incident_type.value,
                            "priority": incident.priority,
                            "tcpr": incident.tcpr,
                            "location": None
                            if location is None
                            else {
                                "municipality": location.municipality,
                                "street": location.street,
                                "house_number": location.house_number,
                                "landmark": location.landmark,
                            },
                        },
                    }
                )
        offset += len(incidents)
        if not incidents or offset >= total:
            break
    return sorted(records, key=lambda r: str(r["id"]))


def write_scenarios(records: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records), "utf-8"
    )
