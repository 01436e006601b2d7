#!/usr/bin/env python3
"""Regenerates the CVI gateway's voice prompts (G.711 mu-law, 8 kHz, mono).

The prompts are synthesised with eSpeak NG (Debian package espeak-ng, 1.51,
British English voice "en-gb", 150 words a minute), resampled to 8 kHz and
encoded as G.711 mu-law with Python's audioop. The gateway derives PCMA
from these at start. Run from this directory:  python3 generate.py
"""
import audioop
import io
import subprocess
import wave

PROMPTS = {
    "welcome": "Welcome to the video meeting service. Please enter your ten digit video conference I D, followed by the hash key.",
    "invalid": "That video conference I D was not recognised. Please try again.",
    "ended": "That meeting has ended, or the I D is no longer valid.",
    "goodbye": "Sorry, we could not find your meeting. Please check the I D in your invitation. Goodbye.",
    "connecting": "Thank you. Connecting you to your meeting.",
    "test_call": "This is the test call. You should now hear and see yourself.",
}

for name, text in PROMPTS.items():
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-gb", "-s", "150", "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = w.readframes(w.getnframes())
        rate = w.getframerate()
    pcm, _ = audioop.ratecv(pcm, 2, 1, rate, 8000, None)
    # 100 ms of silence at each end so the start is not clipped.
    silence = b"\x00\x00" * 800
    ulaw = audioop.lin2ulaw(silence + pcm + silence, 2)
    with open(f"{name}.ulaw", "wb") as f:
        f.write(ulaw)
    print(f"{name}.ulaw: {len(ulaw)} bytes, {len(ulaw) / 8000:.1f} s")
