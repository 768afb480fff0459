"""A prompt becomes a real, playable MP4 through the torch-free path (ONNX Runtime + ffmpeg from PyPI)."""

import re
import subprocess

import imageio_ffmpeg
import numpy as np

from vidmesh_tiny import evaluate
from vidmesh_tiny.generate import main as generate_main


def probe(path) -> str:
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
                       capture_output=True, text=True)
    return r.stderr


def decode(path, w: int, h: int) -> np.ndarray:
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                        "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return np.frombuffer(r.stdout, np.uint8).reshape(-1, h, w, 3)


def test_prompt_to_mp4(tmp_path):
    out = tmp_path / "v.mp4"
    generate_main(["a large red square moving right slowly on a white background", "-o", str(out), "--seed", "3",
                   "--scale", "1"])
    info = probe(out)
    assert re.search(r"Video: h264 .*yuv420p.*64x64", info), info
    assert re.search(r"frame=\s*16\b", info), info
    frames = decode(out, 64, 64)
    assert frames.shape == (16, 64, 64, 3)
    # moov before mdat: playable while downloading.
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    found = evaluate.analyse(frames)
    assert found["background"] == "white"
    assert found["objects"][0]["color"] == "red"


def test_second_aspect_ratio_and_duration(tmp_path):
    out = tmp_path / "w.mp4"
    generate_main(["a small blue circle moving left quickly on a black background", "-o", str(out), "--size", "64x96",
                   "--frames", "32", "--scale", "1", "--steps", "10"])
    info = probe(out)
    assert re.search(r"Video: h264 .*96x64", info), info
    assert re.search(r"frame=\s*32\b", info), info
