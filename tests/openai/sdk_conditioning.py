"""The official `openai` Python SDK, unmodified, against a vidmesh gateway's conditioned generation.

Usage: python sdk_conditioning.py BASE_URL API_KEY OUT_DIR
  BASE_URL  e.g. http://127.0.0.1:8080/v1
  API_KEY   a tenant's key; with no [[admission.tenants]] configured (development) any key, e.g. sk-anything
  OUT_DIR   an existing or new folder for the reference PNG and the downloaded MP4s
Needs the SDK of tests/openai/requirements.txt (`pip install -r tests/openai/requirements.txt`), ffprobe and ffmpeg
on PATH, and a gateway serving vidmesh-tiny (8 fps; 8/16/32 frames = 1s/2s/4s; 64x64). crates/cli/tests/openai.rs
runs it with the interpreter named by VIDMESH_OPENAI_PYTHON (test.sh makes that venv); by hand, with a mesh up:
  python tests/openai/sdk_conditioning.py http://127.0.0.1:8080/v1 sk-anything /tmp/vidmesh-sdk

Checks, in order, each job polled to `completed` and its MP4 checked by ffprobe (h264, 64x64, frame count):
  1. image→video: videos.create(input_reference=<a PNG file>), 16 frames, frame 0 shows the reference's red circle;
  2. image→video: videos.create(input_reference={"image_url": "data:image/png;base64,…"}), 16 frames;
  3. video→video: videos.edit(video={"id": …}) with the extension field strength, and videos.edit(video=<MP4 file>);
  4. extension: videos.extend(seconds="2", video={"id": …}): `seconds` is the stitched total "4", 32 frames;
  5. remix: videos.remix(id, prompt=…): remixed_from_video_id is the source, 16 frames;
  6. refusals as the SDK's typed errors: an unreadable reference, seconds the model does not make, an unknown field
     (400 BadRequestError), and editing a video that does not exist (404 NotFoundError).
Prints "openai SDK conditioning ok" at the end; exits non-zero with an assertion message at the first failure.

openai 3.57.0 refuses an object (not a file) for a multipart field on the client: `input_reference={"image_url":
…}` or `video={"id": …}` raise RuntimeError("Expected entry at `video` to be bytes, …") before any request is sent.
`with_reference` below then sends the same object through `extra_body`, which the SDK encodes as the same form
fields (`video[id]`, `input_reference[image_url]`) its typed argument is meant to; a fixed SDK takes the typed path.
"""

import base64
import pathlib
import signal
import struct
import subprocess
import sys
import warnings
import zlib

import openai

# Every videos.* method carries a deprecation notice (the Sora API's shutdown date); it is not this test's concern.
warnings.filterwarnings("ignore", category=DeprecationWarning)

base_url, api_key, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

# videos.poll has no deadline of its own: a job that never finishes fails the script instead of hanging it.
DEADLINE_S = 900


def _too_slow(signum, frame):
    raise AssertionError(f"sdk_conditioning.py did not finish within {DEADLINE_S} s (a job never completed?)")


signal.signal(signal.SIGALRM, _too_slow)
signal.alarm(DEADLINE_S)

STEPS = 6
SIZE = 64
CIRCLE = (40, 32, 10)  # centre x, centre y, radius in pixels: right of centre, with room to move left
NOTES = []


def red_circle_png(size=SIZE, circle=CIRCLE):
    """A size×size 8-bit RGB PNG of a red disc on black, with zlib and struct only."""
    cx, cy, r = circle
    raw = bytearray()
    for y in range(size):
        raw.append(0)  # filter type 0 (None) for this scanline
        for x in range(size):
            inside = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r
            raw += b"\xff\x00\x00" if inside else b"\x00\x00\x00"

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB), no interlace
    idat = zlib.compress(bytes(raw), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def probe(mp4):
    """ffprobe's `codec,width,height,frames` of the first stream (the same call as sdk_check.py)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
         "-of", "csv=p=0", str(mp4)],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def finish(video, name, frames):
    """Polls `video` to completion, downloads its MP4 to OUT_DIR/<name>.mp4 and checks it has `frames` frames."""
    assert video.status in ("queued", "in_progress", "completed"), f"{name}: the new job is {video.status}: {video}"
    done = client.videos.poll(video.id, poll_interval_ms=200)
    assert done.status == "completed", f"{name}: {video.id} ended {done.status}: {done.error}"
    assert done.progress == 100, f"{name}: completed at progress {done.progress}"
    assert done.size == f"{SIZE}x{SIZE}", f"{name}: size {done.size!r}, wanted {SIZE}x{SIZE}"
    mp4 = out / f"{name}.mp4"
    client.videos.download_content(done.id).write_to_file(mp4)
    got, want = probe(mp4), f"h264,{SIZE},{SIZE},{frames}"
    assert got == want, f"{name}: ffprobe says {got!r}, wanted {want!r}"
    return done, mp4


def with_reference(method, field, ref, *, extra_body, **kwargs):
    """`method(field=ref, …)`, where `ref` is an object such as {"id": …}; see the module docs for the fallback."""
    try:
        return method(**kwargs, **{field: ref}, extra_body=extra_body)
    except RuntimeError as e:
        if "Expected entry at" not in str(e):
            raise
        note = f"openai {openai.__version__} refuses a {field} object client-side; sent it through extra_body"
        if note not in NOTES:
            NOTES.append(note)
        return method(**kwargs, **{field: openai.omit}, extra_body={field: ref, **extra_body})


def refused(error, what, call, *needles):
    """Asserts `call()` raises the SDK's `error` whose text contains every one of `needles`."""
    try:
        video = call()
    except error as e:
        for needle in needles:
            assert needle in str(e), f"{what}: {error.__name__} without {needle!r}: {e}"
        return
    except openai.APIStatusError as e:
        raise AssertionError(f"{what}: wanted {error.__name__}, got {type(e).__name__} ({e.status_code}): {e}") from e
    raise AssertionError(f"{what} was accepted: {video}")


def first_frame_shows_circle(mp4, circle=CIRCLE):
    """Frame 0 of an image→video job is its reference: red inside the circle, dark well outside it."""
    rgb = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mp4), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    assert len(rgb) == SIZE * SIZE * 3, f"frame 0 of {mp4} is {len(rgb)} bytes"
    cx, cy, r = circle
    inside, outside = [], []
    for y in range(SIZE):
        for x in range(SIZE):
            d2 = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2
            px = rgb[(y * SIZE + x) * 3:(y * SIZE + x) * 3 + 3]
            if d2 <= (r - 3) ** 2:
                inside.append(px)
            elif d2 >= (r + 6) ** 2:
                outside.append(px)

    def mean(pixels, channel):
        return sum(p[channel] for p in pixels) / len(pixels)

    red_in, green_in, blue_in, red_out = mean(inside, 0), mean(inside, 1), mean(inside, 2), mean(outside, 0)
    assert red_in - red_out > 60 and red_in - max(green_in, blue_in) > 40, (
        f"frame 0 of {mp4} does not show the reference's red circle: inside RGB "
        f"({red_in:.0f}, {green_in:.0f}, {blue_in:.0f}), red outside {red_out:.0f}"
    )


# 1. Image→video from an uploaded PNG.
png = red_circle_png()
png_path = out / "reference.png"
png_path.write_bytes(png)
with open(png_path, "rb") as f:
    first = client.videos.create(
        prompt="a small red circle moving left slowly on a black background",
        input_reference=f,
        seconds="2",
        size="64x64",
        extra_body={"num_inference_steps": STEPS, "seed": 1},
    )
first, first_mp4 = finish(first, "i2v-upload", 16)
assert first.seconds == "2", f"image→video: seconds {first.seconds!r}, wanted '2'"
first_frame_shows_circle(first_mp4)

# 2. Image→video from a data URL.
data_url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
by_url = with_reference(
    client.videos.create,
    "input_reference",
    {"image_url": data_url},
    prompt="a small red circle moving left slowly on a black background",
    seconds="2",
    size="64x64",
    extra_body={"num_inference_steps": STEPS, "seed": 1},
)
by_url, _ = finish(by_url, "i2v-data-url", 16)

# 3. Video→video: a previous job by id (with strength), then an uploaded MP4.
edited = with_reference(
    client.videos.edit,
    "video",
    {"id": first.id},
    prompt="a small blue circle moving left slowly on a black background",
    extra_body={"strength": 0.5, "num_inference_steps": STEPS, "seed": 2},
)
edited, _ = finish(edited, "edit-by-id", 16)
with open(first_mp4, "rb") as f:
    edited_upload = client.videos.edit(
        prompt="a small blue circle moving left slowly on a black background",
        video=f,
        extra_body={"num_inference_steps": STEPS, "seed": 2},
    )
edited_upload, _ = finish(edited_upload, "edit-upload", 16)

# 4. Extension: 2 s more of a 2 s video; the object's seconds is the stitched total.
extended = with_reference(
    client.videos.extend,
    "video",
    {"id": first.id},
    prompt="a small red circle moving left slowly on a black background",
    seconds="2",
    extra_body={"num_inference_steps": STEPS, "seed": 3},
)
assert extended.seconds == "4", f"extension: seconds {extended.seconds!r} on submission, wanted the stitched '4'"
extended, _ = finish(extended, "extend", 32)
assert extended.seconds == "4", f"extension: seconds {extended.seconds!r} when completed, wanted the stitched '4'"

# 5. Remix: the first job's parameters (its reference included) with a new prompt.
remixed = client.videos.remix(first.id, prompt="a small green circle moving left slowly on a black background")
assert remixed.id != first.id, f"remix: got the source's id {remixed.id}"
assert remixed.remixed_from_video_id == first.id, f"remix: remixed_from_video_id {remixed.remixed_from_video_id!r}"
remixed, _ = finish(remixed, "remix", 16)
assert remixed.remixed_from_video_id == first.id, f"remix: completed with {remixed.remixed_from_video_id!r}"
assert remixed.prompt == "a small green circle moving left slowly on a black background", remixed.prompt

# 6. Refusals, as the SDK's typed errors.
refused(
    openai.BadRequestError,
    "an unreadable reference",
    lambda: client.videos.create(
        prompt="x", input_reference=("x.png", b"not an image", "image/png"), seconds="2", size="64x64"
    ),
    "reference",
)
refused(
    openai.BadRequestError,
    "seconds the model does not make",
    lambda: client.videos.create(prompt="x", seconds="3", size="64x64"),
    "1s, 2s, 4s",
)
refused(
    openai.BadRequestError,
    "an unknown field",
    lambda: client.videos.create(prompt="x", size="64x64", extra_body={"bogus_field": 1}),
    "bogus_field",
)
refused(
    openai.NotFoundError,
    "an edit of a missing video",
    lambda: with_reference(client.videos.edit, "video", {"id": "video_doesnotexist"}, prompt="x", extra_body={}),
)

signal.alarm(0)
for note in NOTES:
    print("note:", note, file=sys.stderr)
print(
    f"openai SDK conditioning ok (openai {openai.__version__}): i2v {first.id}, data URL {by_url.id}, "
    f"edits {edited.id} {edited_upload.id}, extension {extended.id}, remix {remixed.id}"
)
