"""The imperative shell of the annunciator: a sink that sounds alerts on the hub's speaker.

It feeds every alert event and snapshot to the pure planner and runs the real command lines:
``espeak-ng -v VOICE -s WPM -a AMP -w speech.wav TEXT`` to speak the patient message (offline)
and ``aplay -q [-D DEVICE] announcement.wav`` to play tone + speech through ALSA. With
``wav_dir`` set, only the ALSA device differs (``file:DIR/NNNN-....wav,wav``, ALSA's file plugin
over its null device), so tests hear exactly what a patient would, as files.

A hub that cannot sound (no sound card, aplay or espeak-ng missing or failing) keeps trying at
each repeat and reports the reason through ``on_problem``; ``on_problem(None)`` when it works
again. It needs neither the broker nor the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import shutil
import tempfile
import time
import wave
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Literal, Protocol

from daemon.alerts import AlertState, Severity
from daemon.annunciator.planner import Announcement, AnnunciatorPlanner, Pattern
from daemon.annunciator.settings import AnnunciatorSettings
from daemon.annunciator.tones import (
    CHANNELS,
    PAUSE_BEFORE_SPEECH_S,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    render,
    silence,
    spoken_text,
)
from daemon.payloads import AlertEvent, AlertStateSnapshot

log = logging.getLogger(__name__)

ProblemCallback = Callable[[str | None], None]

_SPEECH_TIMEOUT_S = 30.0
_PLAY_MARGIN_S = 10.0
_SPEECH_CACHE = 16


class MonitorOutputLike(Protocol):
    """What the annunciator reads of ``daemon.monitor.MonitorOutput``: its alert events."""

    @property
    def events(self) -> Sequence[AlertEvent]: ...


@dataclass(frozen=True, slots=True)
class Played:
    """One announcement attempt, for the status page and tests (monotonic seconds)."""

    alert_id: str
    severity: Severity
    pattern: Pattern
    started_s: float
    finished_s: float
    outcome: Literal["played", "failed", "interrupted"]
    wav: Path | None  # the file written, in wav_dir mode


def local_time_of_day() -> clock_time:
    return datetime.now().astimezone().time()


class Annunciator:
    """Sink (``on_output``) plus a player task (``start``/``stop`` or ``run``), on one event loop.

    ``spell_numbers``: phone numbers the messages quote (care team, emergency), spoken digit
    by digit.
    """

    def __init__(
        self,
        settings: AnnunciatorSettings,
        *,
        on_problem: ProblemCallback,
        work_dir: Path | None = None,
        spell_numbers: tuple[str, ...] = (),
        monotonic: Callable[[], float] = time.monotonic,
        local_time: Callable[[], clock_time] = local_time_of_day,
        probe_interval_s: float = 30.0,
        history_size: int = 200,
    ) -> None:
        self.settings = settings
        self.planner = AnnunciatorPlanner(settings)
        self._on_problem = on_problem
        self._work_dir = work_dir
        self._own_work_dir = False
        self._spell = spell_numbers
        self._mono = monotonic
        self._local = local_time
        self._probe_interval_s = probe_interval_s
        self.history: deque[Played] = deque(maxlen=history_size)
        self.sounding: str | None = None
        self._problems: dict[str, str] = {}
        self._reported: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tones: dict[Pattern, bytes] = {}
        self._speech: OrderedDict[str, Path] = OrderedDict()
        self._seq = 0
        self._next_probe: float | None = None

    # --- sink ---------------------------------------------------------------------------------
    def on_output(self, out: MonitorOutputLike, snapshot: AlertStateSnapshot) -> None:
        if not self.settings.enabled:
            return
        opened: set[str] = set()
        for event in out.events:
            self.planner.observe(event)
            if event.state is AlertState.CLEARED:
                opened.discard(event.alert_id)
            else:
                opened.add(event.alert_id)
        self.planner.sync(snapshot, keep=frozenset(opened))
        self._wake.set()

    def sync(self, snapshot: AlertStateSnapshot) -> None:
        """Learn the open alerts without an output: after a restart, call it with the restored
        snapshot so unconfirmed alerts sound again at once."""
        if not self.settings.enabled:
            return
        self.planner.sync(snapshot)
        self._wake.set()

    @property
    def problem(self) -> str | None:
        """Why the hub cannot sound right now, or None."""
        return self._reported

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="annunciator")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # The player must never end quietly: an unexpected end is a problem like no speaker.
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("the annunciator stopped", exc_info=exc)
        self._set_problem("player", f"the annunciator stopped ({exc!r}): the hub cannot sound "
                                    "alarms")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        if not self.settings.enabled:
            log.info("annunciator disabled in the configuration: the hub will not sound alarms")
            return
        try:
            self._prepare()
            # Pure-Python synthesis takes about 0.1 s here, several times that on a Pi: not on
            # the event loop's thread.
            volume = self.settings.volume_percent
            for pattern in Pattern:
                self._tones[pattern] = await asyncio.to_thread(render, pattern, volume)
            await self._probe()
            while True:
                self._wake.clear()
                now = self._mono()
                decision = self.planner.decide(now, self._local())
                if decision.play is not None:
                    try:
                        await self._announce(decision.play)
                    except OSError as exc:
                        # A full or read-only disk: report it and try again at the next repeat
                        # rather than let the alarm die.
                        log.exception("could not prepare alert %s", decision.play.alert_id)
                        self._set_problem("output", f"the hub cannot sound alarms: {exc}")
                        self.planner.finished(decision.play.alert_id, self._mono())
                    continue
                if self._problems.get("output") and self._next_probe is not None \
                        and now >= self._next_probe:
                    await self._probe()
                    continue
                wake_at = [t for t in (decision.next_at, self._probe_due()) if t is not None]
                timeout = max(0.0, min(wake_at) - now) if wake_at else None
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives as the wake-up does, and stop() would hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            if self._own_work_dir and self._work_dir is not None:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    def _probe_due(self) -> float | None:
        return self._next_probe if self._problems.get("output") else None

    # --- the work -----------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="crs-hub-sound-"))
            self._own_work_dir = True
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.wav_dir is not None:
            self.settings.wav_dir.mkdir(parents=True, exist_ok=True)
        _write_wav(self._dir / "probe.wav", silence(0.05))

    @property
    def _dir(self) -> Path:
        assert self._work_dir is not None, "run() prepares the work directory first"
        return self._work_dir

    async def _probe(self) -> None:
        """Can aplay open the output? A short silence through the same command line."""
        device = self.settings.alsa_device
        if self.settings.wav_dir is not None:
            device = f"file:{self._dir / 'probe-out.wav'},wav"
        ok, reason = await self._aplay(self._dir / "probe.wav", device, timeout_s=_PLAY_MARGIN_S,
                                       alert_id=None)
        if ok:
            self._set_problem("output", None)
            self._next_probe = None
            return
        self._set_problem("output", await self._explain(reason))
        self._next_probe = self._mono() + self._probe_interval_s

    async def _explain(self, reason: str) -> str:
        # aplay -l tells "no sound card" apart from a busy or wrongly named device.
        if self.settings.wav_dir is None and self.settings.alsa_device is None:
            listing = await _run(["aplay", "-l"], timeout_s=_PLAY_MARGIN_S)
            if listing is not None and "no soundcards found" in (listing[1] + listing[2]):
                return "no sound card found (aplay -l lists none): the hub cannot sound alarms"
        return f"the hub cannot sound alarms: {reason}"

    async def _announce(self, announcement: Announcement) -> None:
        speech = await self._speak(announcement.message) if self.settings.speak else None
        if self.planner.selected(self._local()) != announcement.alert_id:
            return  # confirmed or outranked while the speech was being made
        wav = self._dir / "announcement.wav"
        duration = _write_announcement(wav, self._tones[announcement.pattern], speech)
        self._seq += 1
        out: Path | None = None
        device = self.settings.alsa_device
        if self.settings.wav_dir is not None:
            safe_id = re.sub(r"[^A-Za-z0-9-]", "_", announcement.alert_id)[:40]
            out = self.settings.wav_dir / f"{self._seq:04d}-{announcement.pattern}-{safe_id}.wav"
            device = f"file:{out},wav"
        log.info("sounding alert %s (%s, %s pattern)", announcement.alert_id,
                 announcement.severity, announcement.pattern)
        started = self._mono()
        self.sounding = announcement.alert_id
        try:
            ok, reason = await self._aplay(wav, device, timeout_s=duration + _PLAY_MARGIN_S,
                                           alert_id=announcement.alert_id)
        finally:
            self.sounding = None
        finished = self._mono()
        self.planner.finished(announcement.alert_id, finished)
        interrupted = reason == "interrupted"
        outcome: Literal["played", "failed", "interrupted"] = (
            "played" if ok else "interrupted" if interrupted else "failed")
        self.history.append(Played(announcement.alert_id, announcement.severity,
                                   announcement.pattern, started, finished, outcome,
                                   out if ok else None))
        if ok:
            self._set_problem("output", None)
            self._next_probe = None
        elif not interrupted:
            # Logged once per change of reason by _set_problem; each retry only at debug.
            log.debug("could not sound alert %s: %s", announcement.alert_id, reason)
            self._set_problem("output", await self._explain(reason))
            self._next_probe = self._mono() + self._probe_interval_s

    async def _speak(self, message: str) -> Path | None:
        """The spoken message as a WAV file (cached on disk, not in memory: a 20 s message is
        close to 1 MB); None when espeak-ng cannot make it."""
        text = spoken_text(message, self._spell).lstrip("- ")
        settings = self.settings
        key = hashlib.sha256(
            f"{settings.voice}|{settings.words_per_minute}|{settings.espeak_amplitude}|{text}"
            .encode()).hexdigest()[:20]
        path = self._dir / f"speech-{key}.wav"
        if key in self._speech and path.exists():
            self._speech.move_to_end(key)
            return path
        path.unlink(missing_ok=True)
        result = await _run(["espeak-ng", "-v", settings.voice, "-s",
                             str(settings.words_per_minute), "-a",
                             str(settings.espeak_amplitude), "-w", str(path), text],
                            timeout_s=_SPEECH_TIMEOUT_S)
        if result is None:
            self._speech_failed("espeak-ng is not installed")
            return None
        rc, _, stderr = result
        if rc != 0 or not path.exists():
            self._speech_failed(f"espeak-ng failed ({_last_line(stderr) or f'exit {rc}'})")
            return None
        try:
            with wave.open(str(path), "rb") as w:
                params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                frames = w.getnframes()
        except (wave.Error, EOFError) as exc:
            self._speech_failed(f"espeak-ng wrote an unreadable WAV ({exc})")
            return None
        if params != (CHANNELS, SAMPLE_WIDTH, SAMPLE_RATE):
            self._speech_failed(f"espeak-ng speech format {params} is not 22050 Hz mono")
            return None
        if frames == 0:
            self._speech_failed("espeak-ng wrote no speech")
            return None
        self._set_problem("speech", None)
        self._speech[key] = path
        while len(self._speech) > _SPEECH_CACHE:
            _, old = self._speech.popitem(last=False)
            old.unlink(missing_ok=True)
        return path

    def _speech_failed(self, reason: str) -> None:
        log.error("cannot speak the alert message: %s", reason)
        self._set_problem("speech", f"{reason}: alarms sound without the spoken message")

    async def _aplay(self, wav: Path, device: str | None, *, timeout_s: float,
                     alert_id: str | None) -> tuple[bool, str]:
        """Play ``wav``; stop early when ``alert_id`` is no longer the one to sound."""
        argv = ["aplay", "-q", *(["-D", device] if device else []), str(wav)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            return False, "aplay is not installed (package alsa-utils)"
        done = asyncio.ensure_future(proc.communicate())
        deadline = self._mono() + timeout_s
        try:
            while not done.done():
                remaining = deadline - self._mono()
                if remaining <= 0:
                    proc.kill()
                    await done
                    return False, f"aplay did not finish within {timeout_s:.0f} s"
                # Clear, then look, then wait: a confirmation that came while aplay was
                # starting (before this loop ran) is seen here, a later one wakes the wait.
                self._wake.clear()
                if alert_id is not None and self.planner.selected(self._local()) != alert_id:
                    with contextlib.suppress(ProcessLookupError):  # it may just have ended
                        proc.terminate()
                    await done
                    return False, "interrupted"
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({done, woken}, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(done)
            raise
        _, stderr = done.result()
        if proc.returncode == 0:
            return True, ""
        return False, f"aplay failed: {_last_line(stderr.decode(errors='replace'))}"

    def _set_problem(self, source: str, reason: str | None) -> None:
        if reason is None:
            self._problems.pop(source, None)
        else:
            self._problems[source] = reason
        combined = "; ".join(self._problems[k] for k in sorted(self._problems)) or None
        if combined == self._reported:
            return
        self._reported = combined
        if combined is None:
            log.info("the hub can sound alarms again")
        else:
            log.error("annunciator problem: %s", combined)
        try:
            self._on_problem(combined)
        except Exception:
            log.exception("on_problem callback failed")


async def _run(argv: list[str], *, timeout_s: float) -> tuple[int, str, str] | None:
    """Run a command; None when it is not installed. Times out with a kill."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "", f"{argv[0]} timed out after {timeout_s:.0f} s"
    return proc.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _write_announcement(path: Path, tone: bytes, speech: Path | None) -> float:
    """Tone, a pause, then the speech, as one WAV (one aplay, nothing between them); seconds."""
    # The file is opened first: wave.open(str) on an unwritable path leaves a half-made
    # Wave_write whose __del__ raises.
    with path.open("wb") as file, wave.open(file, "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(tone)
        if speech is not None:
            out.writeframes(silence(PAUSE_BEFORE_SPEECH_S))
            with wave.open(str(speech), "rb") as spoken:
                while chunk := spoken.readframes(SAMPLE_RATE):
                    out.writeframes(chunk)
        return out.getnframes() / SAMPLE_RATE


def _write_wav(path: Path, frames: bytes) -> None:
    with path.open("wb") as file, wave.open(file, "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(frames)
