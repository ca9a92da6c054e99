#!/usr/bin/python3
"""The anchor of the rule latency benchmark: the local rule a Python user would write on the Pi
(seed 002's advice: decide on the device). An asyncio UDP receiver takes FIWARE packets, reads
the temperature, keeps a threshold with hysteresis (on above 30, off below 27) and sends the
command back to the device as a seed 004 update. It stores nothing and records no event (Outpost
does both), so it is a lower bound for a Python rule, not a like-for-like server.

    anchor_rule.py      prints "listening PORT" on stdout, serves until killed. Loopback only.
"""
import asyncio
import json
import sys


class Rule(asyncio.DatagramProtocol):
    def __init__(self):
        self.on = False

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if "ack" in doc:
            return
        for device_id, body in doc.items():
            if device_id == "dataformat_version":
                continue
            body = body.get(device_id, body)
            for s in body.get("sensors", []):
                if s.get("attributes", {}).get("type") != "temperature":
                    continue
                value = s["value"]["values"]
                if not self.on and value > 30:
                    self.on = True
                elif self.on and value < 27:
                    self.on = False
                else:
                    continue
                state = "on" if self.on else "off"
                self.transport.sendto(
                    f"action=update&device_id={device_id}&sensor_id=vent&parameter=state&value={state}".encode(), addr)


async def main():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Rule, local_addr=("127.0.0.1", 0))
    print(f"listening {transport.get_extra_info('sockname')[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
