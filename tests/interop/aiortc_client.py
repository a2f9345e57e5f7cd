#!/usr/bin/python3
"""A bridgemesh participant on aiortc, a WebRTC stack independent of browsers and of webrtc-rs.

It joins as docs/api.md and docs/signaling.md describe: POST /api/v1/rooms/{room}/join, then the
signaling WebSocket (hello, welcome, offer/answer), with aiortc's DEFAULT settings (no bundle
policy forced, no SDP edited). It publishes synthetic audio and video (aiortc's own sources
generating frames), answers every offer the bridge sends, counts the RTP packets it receives per
kind, and records every ICE and peer-connection state it passes through.

After --seconds it leaves and prints one JSON object on stdout:
  {"participant_id", "ice_states": [...], "connection_states": [...], "connected_s",
   "received_packets": {"audio": n, "video": n}, "inbound_streams": n (streams with packets),
   "offers": n, "error": null | "..."}

--publish none|audio+video   what it publishes (default audio+video)
--decline video|all|none     remote streams it answers `inactive` (default none)
--media MODE                 hello's "media" field (both, send_only, receive_only), if given

The report also says, for every offer, how many m-sections carried no ICE candidate
("sections_without_candidates") and the directions the bridge offered ("offered_directions" of
the latest offer), so a test can check the offers themselves as well as what aiortc made of them.

Needs Debian's python3-aiortc (1.4) and python3-websockets; scripts/test installs them.
"""

import argparse
import asyncio
import fractions
import json
import sys
import time
import urllib.request

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame


class SmallVideo(VideoStreamTrack):
    """160x120 frames whose colour changes every frame: cheap to encode, never static."""

    def __init__(self):
        super().__init__()
        self.counter = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.counter += 1
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        for plane, value in zip(frame.planes, (self.counter * 7 % 256, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def join(control, room, name):
    body = {"display_name": name}
    request = urllib.request.Request(
        f"{control}/api/v1/rooms/{room}/join",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


async def run(args, report):
    joined = await asyncio.get_running_loop().run_in_executor(
        None, join, args.control, args.room, args.name
    )
    report["participant_id"] = joined["participant_id"]
    pc = RTCPeerConnection()
    started = time.monotonic()

    @pc.on("iceconnectionstatechange")
    def on_ice():
        report["ice_states"].append([round(time.monotonic() - started, 2), pc.iceConnectionState])

    @pc.on("connectionstatechange")
    def on_connection():
        report["connection_states"].append(
            [round(time.monotonic() - started, 2), pc.connectionState]
        )
        if pc.connectionState == "connected" and report["connected_at"] is None:
            report["connected_at"] = time.monotonic()

    if args.publish == "audio+video":
        # Added before hello: the bridge's first offer's recvonly slots take them (signaling.md).
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(SmallVideo())

    async with websockets.connect(joined["signaling_url"], max_size=2**20) as ws:
        hello = {"type": "hello", "ticket": joined["ticket"]}
        if args.media:
            hello["media"] = args.media
        await ws.send(json.dumps(hello))
        deadline = started + args.seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            message = json.loads(text)
            kind = message.get("type")
            if kind == "offer":
                sections = message["sdp"].split("\r\nm=")[1:]
                report["sections_without_candidates"] += sum(
                    1 for section in sections if "a=candidate:" not in section
                )
                report["offered_directions"] = [
                    line[2:]
                    for line in message["sdp"].split("\r\n")
                    if line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive")
                ]
                await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                local_mids = set()
                for transceiver in pc.getTransceivers():
                    if transceiver.sender.track is not None:
                        local_mids.add(transceiver.mid)
                        continue
                    if args.decline == "all" or (
                        args.decline == "video" and transceiver.kind == "video"
                    ):
                        transceiver.direction = "inactive"
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
                report["offers"] += 1
            elif kind == "bye":
                report["error"] = f"bye {message.get('reason')}"
                break
            elif kind == "error":
                report["error"] = f"error {message.get('code')}: {message.get('message')}"
        await ws.send(json.dumps({"type": "leave"}))

    for stats in (await pc.getStats()).values():
        if stats.type == "inbound-rtp":
            report["received_packets"][stats.kind] += stats.packetsReceived
            if stats.packetsReceived > 0:
                report["inbound_streams"] += 1
    if report["connected_at"] is not None:
        report["connected_s"] = round(time.monotonic() - report["connected_at"], 2)
    await pc.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--publish", choices=["audio+video", "none"], default="audio+video")
    parser.add_argument("--decline", choices=["none", "video", "all"], default="none")
    parser.add_argument("--media", choices=["both", "send_only", "receive_only"])
    args = parser.parse_args()
    report = {
        "participant_id": None,
        "ice_states": [],
        "connection_states": [],
        "connected_at": None,
        "connected_s": 0.0,
        "received_packets": {"audio": 0, "video": 0},
        "offers": 0,
        "inbound_streams": 0,
        "sections_without_candidates": 0,
        "offered_directions": [],
        "error": None,
    }
    try:
        asyncio.run(run(args, report))
    except Exception as err:  # reported, so the test says what went wrong
        report["error"] = f"{type(err).__name__}: {err}"
    report.pop("connected_at")
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
