"""The annunciator through the real command lines (espeak-ng -w, aplay), heard as WAV files.

With ``wav_dir`` the only difference from a hub with speakers is aplay's ALSA device: ALSA's
``file`` plugin writes what aplay plays to a WAV file (over its null device), which sox then
measures. Without a sound card (this machine, CI) the default device is the real no-sound path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import time as clock_time
from pathlib import Path

import pytest

from daemon.alerts import AlertState, Severity
from daemon.annunciator import AnnunciatorSettings, Pattern
from daemon.annunciator.player import Annunciator
from daemon.annunciator.tones import PAUSE_BEFORE_SPEECH_S, pattern_duration_s, spoken_text
from tests.support.alert_events import AlertFeed, alert_event
from tests.support.requirements import integration_required, require_binary

pytestmark = pytest.mark.integration

FEVER = ("Your temperature is 38.6 °C (101.5 °F): you have a fever. Call the care team now at "
         "+1 555-0100. Call 911 instead if you have trouble breathing.")
NUMBERS = ("+1 555-0100", "911")
NOON = clock_time(12, 0)


@pytest.fixture(autouse=True)
def _tools() -> None:
    global SOX
    for tool in ("espeak-ng", "aplay"):
        require_binary(tool)
    SOX = require_binary("sox")


SOX = "/usr/bin/sox"  # resolved once: one test empties PATH


def duration_s(path: Path) -> float:
    out = subprocess.run([SOX, "--i", "-D", str(path)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def stat(path: Path, start_s: float | None = None, length_s: float | None = None) -> dict[str, float]:
    """sox's ``stat`` of ``path`` (or of a stretch of it): amplitudes as fractions of full scale."""
    trim = [] if start_s is None else ["trim", f"{start_s}"] + ([] if length_s is None
                                                              else [f"{length_s}"])
    out = subprocess.run([SOX, str(path), "-n", *trim, "stat"], capture_output=True, text=True,
                         check=True)
    values = {}
    for line in out.stderr.splitlines():
        name, _, value = line.partition(":")
        if value.strip():
            values[" ".join(name.split())] = float(value.split()[0])
    return {"rms": values["RMS amplitude"], "peak": values["Maximum amplitude"],
            "length": values["Length (seconds)"]}


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def heard(annunciator: Annunciator, alert_id: str | None = None) -> list[Path]:
    """The WAV files of announcements that aplay finished playing, in order."""
    return [p.wav for p in annunciator.history if p.outcome == "played" and p.wav is not None
            and (alert_id is None or p.alert_id == alert_id)]


def wavs(directory: Path, alert_id: str | None = None) -> list[Path]:
    files = sorted(directory.glob("*.wav"))
    return [f for f in files if alert_id is None or f.stem.endswith(f"-{alert_id}")]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_an_announcement_is_the_priority_tone_then_the_spoken_message(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    problems: list[str | None] = []
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out), on_problem=problems.append,
                              work_dir=tmp_path / "work", spell_numbers=NUMBERS)
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED, message=FEVER)))
        await until(lambda: len(heard(annunciator)) >= 1, "the first announcement")
        await annunciator.stop()

    run(scenario)
    wav = heard(annunciator)[0]
    assert wav.name == "0001-high-fever-1.wav"
    # The same espeak-ng command line on its own says the message in this many seconds.
    alone = tmp_path / "alone.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-a", "160", "-w", str(alone),
                    spoken_text(FEVER, NUMBERS)], check=True)
    tone = pattern_duration_s(Pattern.HIGH)
    assert duration_s(wav) == pytest.approx(tone + PAUSE_BEFORE_SPEECH_S + duration_s(alone),
                                            abs=0.25)
    assert duration_s(alone) > 8  # the whole message, not a fragment
    burst, pause = stat(wav, 0, tone - 0.75), stat(wav, tone, PAUSE_BEFORE_SPEECH_S - 0.05)
    speech = stat(wav, tone + PAUSE_BEFORE_SPEECH_S)
    assert burst["peak"] > 0.6 and burst["rms"] > 0.2
    assert pause["peak"] < 0.001
    assert speech["rms"] > 0.03 and speech["peak"] > 0.3
    assert problems == []


def test_each_priority_has_its_own_tone(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out, speak=False),
                              on_problem=lambda _: None, work_dir=tmp_path / "work")
    feed = AlertFeed()
    cases = [("crit", Severity.CRITICAL, False, Pattern.HIGH),
             ("med", Severity.MEDIUM, False, Pattern.MEDIUM),
             ("low", Severity.LOW, False, Pattern.LOW),
             ("tech", Severity.MEDIUM, True, Pattern.TECHNICAL)]

    async def scenario() -> None:
        annunciator.start()
        for alert_id, severity, technical, _ in cases:
            annunciator.on_output(*feed.output(
                alert_event(alert_id, AlertState.RAISED, severity, technical=technical)))
            await until(lambda a=alert_id: len(heard(annunciator, a)) >= 1, f"{alert_id} heard")
            annunciator.on_output(*feed.output(
                alert_event(alert_id, AlertState.ACKNOWLEDGED, severity, technical=technical,
                            acknowledged_by="patient")))
        await annunciator.stop()

    run(scenario)
    for alert_id, _, _, pattern in cases:
        wav = heard(annunciator, alert_id)[0]
        assert pattern.value in wav.name
        assert duration_s(wav) == pytest.approx(pattern_duration_s(pattern), abs=0.1)
        assert stat(wav)["peak"] > 0.6
    lengths = {pattern: duration_s(heard(annunciator, a)[0]) for a, _, _, pattern in cases}
    assert len({round(v, 1) for v in lengths.values()}) == 4


def test_repeats_at_the_interval_until_the_patient_confirms(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    interval = 0.3
    annunciator = Annunciator(
        AnnunciatorSettings(wav_dir=out, repeat_s={"high": interval, "medium": interval}),
        on_problem=lambda _: None, work_dir=tmp_path / "work", spell_numbers=NUMBERS)
    feed = AlertFeed()
    counted: dict[str, float] = {}

    async def scenario() -> None:
        annunciator.start()
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED,
                                                       message=FEVER)))
        await until(lambda: len(heard(annunciator, "fever-1")) >= 3, "three announcements")
        annunciator.on_output(*feed.output(alert_event(
            "fever-1", AlertState.ACKNOWLEDGED, acknowledged_by="patient",
            message="The care team has seen this alert.")))
        counted["ack_at"] = time.monotonic()
        # Another alert proves the player is still running, and nothing of fever-1 follows.
        annunciator.on_output(*feed.output(alert_event("hr-1", AlertState.RAISED,
                                                       Severity.MEDIUM)))
        await until(lambda: len(heard(annunciator, "hr-1")) >= 2, "the next alert repeating")
        annunciator.on_output(*feed.output(alert_event("hr-1", AlertState.CLEARED,
                                                       Severity.MEDIUM)))
        counted["hr_at_clear"] = len(wavs(out, "hr-1"))
        await until(lambda: annunciator.sounding is None, "playback to end")
        await annunciator.stop()

    run(scenario)
    fever = [p for p in annunciator.history if p.alert_id == "fever-1"]
    assert len(fever) == len(wavs(out, "fever-1")) >= 3
    # None started after the acknowledgement.
    assert all(p.started_s < counted["ack_at"] for p in fever)
    # Each one played in full, except at most the one the acknowledgement cut short.
    assert all(p.outcome == "played" and p.pattern is Pattern.HIGH for p in fever[:-1])
    assert fever[-1].outcome in {"played", "interrupted"}
    gaps = [b.started_s - a.finished_s for a, b in itertools.pairwise(fever)]
    assert all(interval <= gap < interval + 2.0 for gap in gaps), gaps
    assert len(wavs(out, "hr-1")) == counted["hr_at_clear"]
    # Files are numbered in play order: every fever-1 file comes before every hr-1 file.
    names = [p.name for p in wavs(out)]
    assert all(n.endswith("-fever-1.wav") for n in names[: len(fever)])
    assert all(n.endswith("-hr-1.wav") for n in names[len(fever):])
    for wav in heard(annunciator, "fever-1"):
        assert duration_s(wav) > pattern_duration_s(Pattern.HIGH) + 8


def test_quiet_period_holds_a_technical_alarm_but_not_a_high_one(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    annunciator = Annunciator(
        AnnunciatorSettings.model_validate(
            {"wav_dir": str(out), "speak": False, "repeat_s": {"high": 0.2, "technical": 0.2},
             "quiet_period": {"start": "22:00", "end": "07:00"}}),
        on_problem=lambda _: None, work_dir=tmp_path / "work",
        local_time=lambda: clock_time(23, 15))
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        annunciator.on_output(*feed.output(
            alert_event("nodata", AlertState.RAISED, Severity.MEDIUM, technical=True)))
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED)))
        await until(lambda: len(heard(annunciator, "fever-1")) >= 2, "the fever alarm repeating")
        await annunciator.stop()

    run(scenario)
    assert wavs(out, "nodata") == []
    assert annunciator.planner.unconfirmed() == ["nodata", "fever-1"]


def test_volume_setting_scales_what_is_played(tmp_path: Path) -> None:
    peaks = {}
    for volume in (40, 100):
        out = tmp_path / f"v{volume}"
        annunciator = Annunciator(AnnunciatorSettings(wav_dir=out, volume_percent=volume),
                                  on_problem=lambda _: None, work_dir=tmp_path / f"w{volume}")
        feed = AlertFeed()

        async def scenario(a: Annunciator = annunciator, o: Path = out, f: AlertFeed = feed) -> None:
            a.start()
            a.on_output(*f.output(alert_event("fever-1", AlertState.RAISED, message=FEVER)))
            await until(lambda: len(heard(a)) >= 1, "an announcement")
            await a.stop()

        run(scenario)
        wav = heard(annunciator)[0]
        tone = pattern_duration_s(Pattern.HIGH)
        peaks[volume] = (stat(wav, 0, tone)["peak"], stat(wav, tone + PAUSE_BEFORE_SPEECH_S)["rms"])
    assert peaks[40][0] / peaks[100][0] == pytest.approx(0.4, abs=0.03)
    # espeak-ng -a 80 vs -a 200: quieter speech as well.
    assert peaks[40][1] < 0.6 * peaks[100][1]


def _has_sound_card() -> bool:
    listing = subprocess.run(["aplay", "-l"], capture_output=True, text=True)
    return "no soundcards found" not in listing.stdout + listing.stderr


def test_without_a_sound_card_it_reports_the_problem_and_keeps_trying(tmp_path: Path) -> None:
    if _has_sound_card():
        # CI has no sound card by definition; a developer's machine with one is spared the noise.
        reason = "this machine has a sound card: the test would sound an alarm"
        if integration_required():
            pytest.fail(f"{reason}, and CRS_REQUIRE_INTEGRATION=1 expects CI without one")
        pytest.skip(reason)
    problems: list[str | None] = []
    annunciator = Annunciator(
        AnnunciatorSettings(repeat_s={"high": 0.2}), on_problem=problems.append,
        work_dir=tmp_path / "work", probe_interval_s=0.2)
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        await until(lambda: bool(problems), "the problem report at start")
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED)))
        await until(lambda: len(annunciator.history) >= 3, "three attempts")
        await annunciator.stop()

    run(scenario)
    assert problems == ["no sound card found (aplay -l lists none): the hub cannot sound alarms"]
    assert annunciator.problem == problems[0]
    assert {p.outcome for p in annunciator.history} == {"failed"}
    assert all(p.alert_id == "fever-1" for p in annunciator.history)


def test_a_failing_output_is_reported_and_cleared_when_it_works_again(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    problems: list[str | None] = []
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out, speak=False,
                                                  repeat_s={"high": 0.2}),
                              on_problem=problems.append, work_dir=tmp_path / "work")
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        await until(lambda: out.is_dir(), "the output directory")
        out.rmdir()
        out.write_text("not a directory")  # aplay's ALSA file device cannot open its file
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED)))
        await until(lambda: bool(problems), "the problem report")
        out.unlink()
        out.mkdir()
        await until(lambda: len(problems) >= 2, "the all-clear report")
        await until(lambda: len(heard(annunciator, "fever-1")) >= 1, "the alarm heard")
        await annunciator.stop()

    run(scenario)
    assert len(problems) == 2 and problems[1] is None
    assert problems[0] is not None and problems[0].startswith("the hub cannot sound alarms: aplay")
    outcomes = [p.outcome for p in annunciator.history]
    assert outcomes[0] == "failed" and outcomes[-1] == "played"


def test_without_espeak_ng_the_tone_still_sounds_and_the_problem_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aplay").symlink_to(require_binary("aplay"))
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "heard"
    problems: list[str | None] = []
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out), on_problem=problems.append,
                              work_dir=tmp_path / "work")
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED)))
        await until(lambda: len(heard(annunciator)) >= 1, "the tone")
        await annunciator.stop()

    run(scenario)
    assert os.environ["PATH"] == str(bin_dir)
    assert problems == ["espeak-ng is not installed: alarms sound without the spoken message"]
    wav = heard(annunciator)[0]
    assert duration_s(wav) == pytest.approx(pattern_duration_s(Pattern.HIGH), abs=0.1)
    assert stat(wav)["peak"] > 0.6


def test_sound_check_plays_every_sound_once(tmp_path: Path) -> None:
    from daemon.annunciator.check import sound_check

    out = tmp_path / "heard"
    problems = asyncio.run(sound_check(AnnunciatorSettings(wav_dir=out), list(Pattern),
                                       work_dir=tmp_path / "work"))
    assert problems == []
    names = [p.name for p in wavs(out)]
    assert names == ["0001-high-check-high.wav", "0002-medium-check-medium.wav",
                     "0003-low-check-low.wav", "0004-technical-check-technical.wav"]
    for wav, pattern in zip(wavs(out), Pattern, strict=True):
        assert duration_s(wav) > pattern_duration_s(pattern) + 1.5  # tone, then the sentence
        assert stat(wav, pattern_duration_s(pattern) + PAUSE_BEFORE_SPEECH_S)["rms"] > 0.03


def test_a_disk_error_is_reported_and_the_alarm_retried_not_lost(tmp_path: Path) -> None:
    out, work = tmp_path / "heard", tmp_path / "work"
    problems: list[str | None] = []
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out, speak=False,
                                                  repeat_s={"high": 0.2}),
                              on_problem=problems.append, work_dir=work)
    feed = AlertFeed()

    async def scenario() -> None:
        annunciator.start()
        await until(lambda: (work / "probe.wav").exists(), "the work directory")
        (work / "announcement.wav").mkdir()  # the announcement cannot be written
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED)))
        await until(lambda: bool(problems), "the problem report")
        (work / "announcement.wav").rmdir()
        await until(lambda: len(heard(annunciator, "fever-1")) >= 1, "the alarm heard")
        await annunciator.stop()

    run(scenario)
    assert problems[0] is not None and "Is a directory" in problems[0]
    assert problems[-1] is None


def test_with_the_real_monitor_fever_then_emergency_then_patient_confirms(tmp_path: Path) -> None:
    """The sink fed by daemon.monitor: its MonitorOutput and snapshot, its messages, its acks."""
    from datetime import timedelta

    from daemon.decoding import CHARACTERISTICS
    from daemon.encoding import encode_temperature
    from daemon.monitor import (
        Acknowledgement,
        BrokerLink,
        GattPayload,
        Monitor,
        Start,
        SymptomReport,
        Tick,
    )
    from daemon.profiles import load_profiles
    from tests.support.hubs import T0, hub_config

    temperature = CHARACTERISTICS["temperature_measurement"]
    config = hub_config(tmp_path / "data", 1883)
    monitor = Monitor(config, load_profiles())
    out = tmp_path / "heard"
    annunciator = Annunciator(
        AnnunciatorSettings(wav_dir=out, repeat_s={"high": 0.2, "emergency": 0.2}),
        on_problem=lambda _: None, work_dir=tmp_path / "work",
        spell_numbers=(config.patient.care_team_phone, config.patient.emergency_number))
    ids: dict[str, str] = {}

    def submit(inp: object) -> list[str]:
        output = monitor.handle(inp)  # type: ignore[arg-type]
        annunciator.on_output(output, monitor.snapshot(inp.at))  # type: ignore[attr-defined]
        return [e.alert_id for e in output.events
                if e.state is AlertState.RAISED and not e.technical]

    async def scenario() -> None:
        annunciator.start()
        submit(Start(T0))
        submit(BrokerLink(True, T0))
        raised: list[str] = []
        for second in range(0, 91):  # a patch reading every 30 s, the monitor ticked each second
            at = T0 + timedelta(seconds=second)
            if second % 30 == 0:
                raised += submit(GattPayload("temp-patch", temperature,
                                             encode_temperature(38.1), at))
            raised += submit(Tick(at))
        (ids["fever"],) = raised
        await until(lambda: len(heard(annunciator, ids["fever"])) >= 2, "the fever alarm")
        (ids["breathing"],) = submit(SymptomReport("trouble_breathing",
                                                   T0 + timedelta(seconds=92)))
        await until(lambda: len(heard(annunciator, ids["breathing"])) >= 2, "the emergency")
        for n, alert_id in enumerate((ids["breathing"], ids["fever"])):
            submit(Acknowledgement(alert_id, "patient", T0 + timedelta(seconds=93 + n)))
        ids["after"] = str(time.monotonic())
        await until(lambda: annunciator.sounding is None, "playback to end")
        await annunciator.stop()

    run(scenario)
    after = float(ids["after"])
    played = [p for p in annunciator.history if p.outcome == "played"]
    assert all(p.started_s < after for p in annunciator.history
               if p.alert_id in {ids["fever"], ids["breathing"]})
    assert {p.alert_id for p in played} == {ids["fever"], ids["breathing"]}
    assert {p.severity for p in played if p.alert_id == ids["breathing"]} == {Severity.EMERGENCY}
    # While the emergency was open, the fever did not sound.
    first_emergency = min(p.started_s for p in played if p.alert_id == ids["breathing"])
    last_emergency = max(p.started_s for p in played if p.alert_id == ids["breathing"])
    assert not any(first_emergency < p.started_s < last_emergency
                   for p in played if p.alert_id == ids["fever"])
    # The fever message, spoken: longer than the tone by a full sentence or more.
    fever_wav = heard(annunciator, ids["fever"])[0]
    assert duration_s(fever_wav) > pattern_duration_s(Pattern.HIGH) + 10


def test_after_a_restart_the_restored_snapshot_sounds_what_is_unconfirmed(tmp_path: Path) -> None:
    out = tmp_path / "heard"
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out, speak=False),
                              on_problem=lambda _: None, work_dir=tmp_path / "work")
    before = AlertFeed()
    before.output(alert_event("fever-1", AlertState.RAISED),
                  alert_event("hr-1", AlertState.RAISED, Severity.MEDIUM),
                  alert_event("fever-2", AlertState.RAISED, Severity.CRITICAL,
                              acknowledged_by="patient"))
    _, restored = before.output()

    async def scenario() -> None:
        annunciator.start()
        annunciator.sync(restored)
        await until(lambda: len(heard(annunciator, "fever-1")) >= 1, "the restored alarm")
        annunciator.on_output(*before.output(alert_event("fever-1", AlertState.CLEARED)))
        await until(lambda: len(heard(annunciator, "hr-1")) >= 1, "the next one")
        await annunciator.stop()

    run(scenario)
    assert [p.alert_id for p in annunciator.history] == ["fever-1", "hr-1"]


def test_confirming_stops_the_sound_in_the_middle_of_an_announcement(tmp_path: Path) -> None:
    """aplay plays into a named pipe that the test reads like a slow speaker (a few kB at a
    time), so aplay is part-way through the announcement, blocked, as it would be on a speaker
    mid-sentence; the patient's confirmation must stop that aplay, not wait for the message to
    end."""
    out = tmp_path / "heard"
    out.mkdir()
    pipe = out / f"0001-{Pattern.HIGH}-fever-1.wav"  # the name of the first announcement
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # so that aplay's open never waits
    annunciator = Annunciator(AnnunciatorSettings(wav_dir=out), on_problem=lambda _: None,
                              work_dir=tmp_path / "work", spell_numbers=NUMBERS)
    feed = AlertFeed()
    got = bytearray()

    def listen() -> bool:
        # 4 kB per 20 ms poll, about 4 x real time: never so fast that aplay could write the
        # whole announcement before the confirmation reaches it, and never stalled, since
        # aplay, once told to stop, still hands its last buffer to the "speaker".
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(reader, 4096))
        return True

    async def scenario() -> None:
        annunciator.start()
        annunciator.on_output(*feed.output(alert_event("fever-1", AlertState.RAISED,
                                                       message=FEVER)))
        await until(lambda: annunciator.sounding == "fever-1" and listen() and len(got) > 0,
                    "aplay to start writing the announcement")
        annunciator.on_output(*feed.output(alert_event(
            "fever-1", AlertState.ACKNOWLEDGED, acknowledged_by="patient",
            message="The care team has seen this alert.")))
        await until(lambda: listen() and bool(annunciator.history), "the announcement to end",
                    timeout_s=10)
        await annunciator.stop()

    try:
        run(scenario)
        with contextlib.suppress(BlockingIOError):  # what aplay wrote before it ended
            while chunk := os.read(reader, 65536):
                got.extend(chunk)
    finally:
        os.close(reader)
    played = annunciator.history
    assert [(p.alert_id, p.outcome) for p in played] == [("fever-1", "interrupted")]
    # Far less than the whole announcement reached the "speaker": tone (~2 s) and message
    # (> 8 s) at 22,050 Hz, 16-bit mono is over 400 kB.
    whole_s = pattern_duration_s(Pattern.HIGH) + 8
    assert 0 < len(got) < 0.5 * whole_s * 22050 * 2, len(got)
    assert wavs(out) == [pipe]  # and nothing was sounded after it
