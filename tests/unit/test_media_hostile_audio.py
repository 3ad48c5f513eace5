"""A result's audio track is untrusted: hostile layouts and lengths must neither crash nor exhaust the process.

The MP4s are built here with PyAV. Each decode runs in a child process, so a crash (PyAV's to_ndarray on a
planar 7.1 frame segfaulted) shows up as a failed test instead of killing the test run, and the child's peak
memory can be read honestly (FFmpeg's own allocations are invisible to tracemalloc).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from happyhorse.engine.media import AUDIO_MARGIN_S, MAX_AUDIO_RATE

VIDEO_S, FPS = 1.0, 12


def _hostile_clip(path: Path, layout: str, rate: int, audio_s: float, garbage: bool = False) -> Path:
    """VIDEO_S of H.264 and audio_s of AAC silence in `layout` at `rate`. One real AAC packet is muxed again
    and again, so 300 s of 96 kHz 5.1 audio takes half a second to build and half a megabyte on disk.
    garbage=True muxes random bytes as the audio packets instead."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout=layout)
        for index in range(int(VIDEO_S * FPS)):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        channels = av.AudioLayout(layout).nb_channels
        # Packed input: PyAV's from_ndarray cannot build a planar frame of 8 channels either.
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024 * channels), np.float32), format="flt",
                                             layout=layout)
        silence.sample_rate, silence.pts = rate, 0
        template = bytes([*audio.encode(silence), *audio.encode(None)][-1])
        rng = np.random.default_rng(1)
        for index in range(int(audio_s * rate) // 1024):
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes() if garbage else template)
            packet.stream, packet.time_base = audio, audio.time_base
            packet.pts = packet.dts = index * 1024
            packet.duration = 1024
            out.mux(packet)
    return path


_CHILD = """
import json, resource, sys
from happyhorse.engine.media import MediaError, decode_audio
try:
    waveform, rate = decode_audio(sys.argv[1])
    result = {"shape": list(waveform.shape), "rate": rate}
except MediaError as exc:
    result = {"error": str(exc)}
result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def _decode_in_child(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"decoding {path.name} killed the process (exit {proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def _baseline_mb() -> float:
    """Peak memory of a child that only imports the media layer and opens nothing."""
    code = "import resource, happyhorse.engine.media; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_a_7_1_track_decodes_to_stereo_without_crashing(tmp_path: Path) -> None:
    result = _decode_in_child(_hostile_clip(tmp_path / "surround71.mp4", "7.1", 48_000, VIDEO_S))
    assert result["shape"][0] == 2 and result["rate"] == 48_000
    assert 0.9 * 48_000 <= result["shape"][1] <= (VIDEO_S + AUDIO_MARGIN_S) * 48_000


def test_long_high_rate_surround_audio_is_cut_to_the_video_length(tmp_path: Path) -> None:
    path = _hostile_clip(tmp_path / "long51.mp4", "5.1", 96_000, 300.0)
    assert path.stat().st_size < 1_000_000
    result = _decode_in_child(path)
    # Before: [6, 28_800_000] float32 = 0.69 GB decoded, 2.0 GB peak. Now: stereo, 48 kHz, 1.5 s.
    assert result["shape"] == [2, int((VIDEO_S + AUDIO_MARGIN_S) * MAX_AUDIO_RATE)]
    assert result["rate"] == MAX_AUDIO_RATE
    assert result["peak_mb"] - _baseline_mb() < 50, result


def test_a_track_of_garbage_is_a_clear_error_and_the_node_gets_silence(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from happyhorse.comfy.tensors import audio_from_video

    path = _hostile_clip(tmp_path / "garbage.mp4", "stereo", 48_000, VIDEO_S, garbage=True)
    result = _decode_in_child(path)
    assert "audio track does not decode" in result["error"]
    audio = audio_from_video(str(path), VIDEO_S)
    assert audio["waveform"].shape[:2] == (1, 1) and not audio["waveform"].any()
    assert audio["waveform"].dtype == torch.float32
