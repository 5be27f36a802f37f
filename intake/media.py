"""The centre's media side, started after its state: transcription and the telephony adapters (SIP
endpoint, AMI bridge), each optional, each failure logged and shown as degraded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from intake.domain import CallTaker
from intake.errors import TelephonyError
from intake.pbx import PbxCallControl
from routing.acd import TakerState
from telephony.errors import AdapterError

if TYPE_CHECKING:
    from intake.app import Centre

log = logging.getLogger(__name__)


def _mirror_on_pbx(pbx: PbxCallControl) -> Callable[[CallTaker, TakerState, str], Awaitable[None]]:
    async def mirror(taker: CallTaker, state: TakerState, reason: str) -> None:
        try:
            await pbx.taker_state_changed(taker, state, reason)
        except AdapterError as exc:
            log.error("%s", exc)
            raise TelephonyError(
                f"{exc}; intake shows {taker.id} as {state.value}, the PBX queues are put right at the next AMI "
                "reconnect or state change",
                taker_id=taker.id,
            ) from exc

    return mirror


async def start_media(centre: Centre, stack: AsyncExitStack) -> None:
    """Transcription and telephony adapters: each optional, each failure logged and shown as degraded."""
    settings = centre.settings
    # Recognition in worker processes (IZS_RECOGNITION=redis; transcription/streams.py).
    if settings.transcription_enabled and settings.recognition == "redis":
        from transcription.streams import RemoteRecognizer

        # The centre's Redis: the configured one, or the one this node started (then workers must run on
        # this machine; a region with worker machines configures IZS_REDIS_URL).
        redis_url = settings.redis_url
        if redis_url is None:
            assert centre.embedded_redis is not None  # started by Centre.start when no URL is configured
            redis_url = centre.embedded_redis.url
        remote = await asyncio.to_thread(
            RemoteRecognizer, redis_url, centre.calls.submit, node=settings.node_id
        )
        centre.transcriber = remote
        stack.callback(remote.close)
        centre.calls.use_transcriber(remote)
    elif settings.transcription_enabled:
        from transcription.config import TranscriptionConfig
        from transcription.service import TranscriptionService

        engines = {k: v for k, v in settings.engine_by_language.items() if k != "default"}
        centre.transcriber = TranscriptionService(
            TranscriptionConfig(
                models_dir=settings.effective_model_dir,
                cache_dir=settings.effective_model_dir / "cache",
                engines=engines,
                default_engine=settings.engine_by_language.get("default", "whisper"),
                decode_slots=settings.transcription_workers,
            ),
            on_event=centre.calls.submit,
        )
        stack.callback(centre.transcriber.close)
        centre.calls.use_transcriber(centre.transcriber)
    if settings.sip_enabled:
        from telephony.sip import SipEndpoint, SipEndpointConfig
        from telephony.sip.prompt import generate_prompt_wav, read_wav_pcm

        centre.sip = SipEndpoint(
            SipEndpointConfig(
                host=settings.sip_host,
                port=settings.sip_port,
                public_host=settings.sip_public_host,
                accepted_numbers=frozenset(settings.accepted_numbers),
                rtp_port_min=settings.rtp_port_min,
                rtp_port_max=settings.rtp_port_max,
                taker_uris=tuple(t.sip_uri for t in settings.takers if t.sip_uri),
            ),
            sink=centre.calls.submit,
        )
        try:
            prompt = await asyncio.to_thread(generate_prompt_wav, settings.var_dir)
            centre.calls.use_prompt(await asyncio.to_thread(read_wav_pcm, prompt))
        except (OSError, AdapterError) as exc:
            log.error("waiting prompt unavailable (queued callers will hear silence): %s", exc)
        await asyncio.to_thread(centre.sip.start)
        stack.callback(centre.sip.stop)
        centre.calls.attach("sip", centre.sip)
    if settings.ami_enabled:
        from telephony.ami import AmiBridge, AmiConfig

        centre.ami = AmiBridge(
            AmiConfig(
                host=settings.ami_host,
                port=settings.ami_port,
                username=settings.ami_username,
                secret=settings.ami_secret,
                channel_driver=settings.ami_channel_driver,
                fork_endpoint=settings.ami_fork_endpoint or "",
            ),
            sink=centre.calls.submit,
        )
        pbx = PbxCallControl(
            centre.ami,
            takers=await asyncio.to_thread(centre.repo.list_takers),
            taker_states=centre.live.taker_states,
        )
        centre.desks.on_taker_state = _mirror_on_pbx(pbx)
        await centre.ami.start()
        stack.push_async_callback(centre.ami.stop)
        centre.calls.attach("ami", pbx)
