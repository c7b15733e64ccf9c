"""The calls of make.sh's `rtpengine` service: a SIP proxy's side of rtpengine's NG control protocol (bencoded
dictionaries over UDP, on the port given as the first argument) and the two phones' RTP, all on 127.0.0.1.

Four calls with audio both ways, one with audio one way only, one that never sends audio, all hung up (delete); one
that is never hung up and goes silent (rtpengine times it out); then requests that fail:
an answer for a call never offered, an offer whose SDP does not parse, a command that does not exist."""

import os
import re
import socket
import struct
import sys
import time

NG = ("127.0.0.1", int(sys.argv[1]))


def encode(value):
    """Bencode a request: a dictionary of strings (all that these requests hold)."""
    if isinstance(value, dict):
        return b"d" + b"".join(encode(key) + encode(item) for key, item in sorted(value.items())) + b"e"
    value = value.encode()
    return b"%d:%s" % (len(value), value)


def decode(data, at=0):
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind == b"l":
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            item, at = decode(data, at)
            items.append(item)
        return items, at + 1
    if kind == b"d":
        items, at = {}, at + 1
        while data[at : at + 1] != b"e":
            key, at = decode(data, at)
            items[key.decode()], at = decode(data, at)
        return items, at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
control.settimeout(5)


def ng(command, **args):
    cookie = os.urandom(4).hex().encode()
    control.sendto(cookie + b" " + encode({**args, "command": command}), NG)
    data = control.recv(65535)
    reply, _ = decode(data, data.index(b" ") + 1)
    print(command, reply.get("result"), reply.get("error-reason", b""), file=sys.stderr)
    return reply


def sdp(port, codecs="0 8"):
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )


def media_port(reply):
    return int(re.search(rb"m=audio (\d+)", reply["sdp"]).group(1))


def call(call_id, packets, one_way=False, hang_up=True):
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    tags = {"call-id": call_id, "from-tag": "caller"}
    offer = ng("offer", **tags, sdp=sdp(caller.getsockname()[1]))
    answer = ng("answer", **tags, **{"to-tag": "callee"}, sdp=sdp(callee.getsockname()[1], "0"))
    to_callee, to_caller = media_port(offer), media_port(answer)
    for seq in range(packets):
        header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234)
        caller.sendto(header + bytes(160), ("127.0.0.1", to_caller))
        if not one_way:
            header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5678)
            callee.sendto(header + bytes(160), ("127.0.0.1", to_callee))
        time.sleep(0.02)
    ng("query", **{"call-id": call_id})
    if hang_up:
        ng("delete", **tags)
    return caller, callee


ng("ping")
for i in range(4):
    call(f"call-{i}", 100)
call("one-way", 50, one_way=True)
call("no-audio", 0)
call("never-hung-up", 20, hang_up=False)
ng("list")
ng("statistics")
ng("answer", **{"call-id": "never-offered", "from-tag": "caller", "to-tag": "callee"}, sdp=sdp(40000))
ng("offer", **{"call-id": "bad-sdp", "from-tag": "caller"}, sdp="this is not SDP")
ng("no-such-command")
