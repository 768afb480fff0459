"""The official `openai` Python SDK, unmodified, against a vidmesh gateway's HTTP API.

Usage: python sdk_check.py BASE_URL API_KEY OUT_DIR
  BASE_URL  e.g. http://127.0.0.1:8080/v1
Creates a video with create_and_poll, downloads its MP4, thumbnail and spritesheet, lists, deletes, and checks
the SDK's typed errors for a bad key, a refused size and a missing video. Exits non-zero on the first failure.
"""

import pathlib
import subprocess
import sys

import openai

base_url, api_key, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

video = client.videos.create_and_poll(
    prompt="a small red circle moving left slowly on a black background",
    seconds="2",
    size="64x64",
    poll_interval_ms=200,
    extra_body={"num_inference_steps": 6, "seed": 42},
)
assert video.status == "completed", video
assert video.progress == 100, video
assert video.seconds == "2" and video.size == "64x64", video

mp4 = out / "sdk.mp4"
client.videos.download_content(video.id).write_to_file(mp4)
probe = subprocess.run(
    ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
     "-of", "csv=p=0", str(mp4)],
    capture_output=True, text=True, check=True,
)
assert probe.stdout.strip() == "h264,64,64,16", probe.stdout
for variant in ("thumbnail", "spritesheet"):
    png = client.videos.download_content(video.id, variant=variant).read()
    assert png[1:4] == b"PNG", variant

ids = [v.id for v in client.videos.list(limit=10)]
assert video.id in ids, ids

deleted = client.videos.delete(video.id)
assert deleted.deleted and deleted.id == video.id, deleted
try:
    client.videos.retrieve(video.id)
    raise AssertionError("a deleted video is still there")
except openai.NotFoundError:
    pass

try:
    client.videos.create(prompt="x", size="4096x4096")
    raise AssertionError("an absurd size was accepted")
except openai.BadRequestError as e:
    assert "64x64" in str(e), e

bad = openai.OpenAI(base_url=base_url, api_key="sk-not-a-key", max_retries=0)
try:
    bad.videos.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print("openai SDK", openai.__version__, "ok:", video.id)
